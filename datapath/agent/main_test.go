package agent

import (
	"os"
	"testing"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBPF(m)) }
