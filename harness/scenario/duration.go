package scenario

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Duration is a time.Duration that reads and writes as a Go duration string
// ("10s", "1m30s"). It also reads a JSON or YAML number as seconds.
type Duration struct {
	time.Duration
}

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.Duration.String())
}

// UnmarshalJSON reads a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		d.Duration = v
		return nil
	}
	var secs float64
	if err := json.Unmarshal(data, &secs); err != nil {
		return fmt.Errorf("duration: want a string like \"10s\" or a number of seconds, have %s", data)
	}
	ns := secs * float64(time.Second)
	if math.IsNaN(ns) || math.Abs(ns) > math.MaxInt64 {
		return fmt.Errorf("duration: %s seconds is out of range", data)
	}
	d.Duration = time.Duration(ns)
	return nil
}
