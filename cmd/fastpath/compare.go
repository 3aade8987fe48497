package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/compare"
	"github.com/fastpath-bench/fastpath/harness/report"
)

// Exit statuses of fastpath compare. It calls os.Exit itself instead of
// returning an error to main, so that a regression and bad input get
// different statuses without main knowing about either.
const (
	// exitRegression: the comparison was made and some figure is worse.
	exitRegression = 1
	// exitBadInput: no comparison: a report could not be read, is of
	// another schema version, the reports have nothing in common, an
	// option is invalid, or the HTML page could not be written.
	exitBadInput = 2
)

func newCompare() *cobra.Command {
	var threshold, htmlPath string
	var alpha float64
	cmd := &cobra.Command{
		Use:   "compare OLD.json NEW.json",
		Short: "Compare two report.json files figure by figure and flag significant regressions",
		Long: `Compare two report.json files. Results are paired by scenario and datapath;
for each pair, latency p50/p90/p99/p99.9, actual QPS and error rate are
compared over the repetitions (medians, relative change, bootstrap
confidence interval, Mann-Whitney U p-value, verdict). The comparison is
printed as Markdown; --html also writes it as a self-contained page.

A figure is worse (better) when its change is in the bad (good) direction,
larger than --threshold, and significant: p < --alpha and the confidence
interval excludes 0, or complete separation (at least 2 repetitions per
side, every new repetition worse (better) than every old one).

Exit status: 0 when no figure is worse, 1 when some figure is worse (the
last line names them), 2 when no comparison could be made (unreadable
report, other schema version, no scenario and datapath in common, invalid
option).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := runCompare(args, threshold, alpha, htmlPath)
			if err != nil {
				fmt.Fprintln(os.Stderr, "fastpath compare:", err)
			}
			os.Exit(code)
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		fmt.Fprintf(os.Stderr, "fastpath compare: %v\n%s", err, cmd.UsageString())
		os.Exit(exitBadInput)
		return err
	})
	f := cmd.Flags()
	f.StringVar(&threshold, "threshold", "5%", "smallest relative change of the medians that counts, e.g. 5% or 0.05")
	f.Float64Var(&alpha, "alpha", compare.DefaultAlpha, "significance level of the Mann-Whitney test (the confidence interval is at 1-alpha)")
	f.StringVar(&htmlPath, "html", "", "also write the comparison as a self-contained HTML page to this file")
	return cmd
}

// runCompare does fastpath compare and returns its exit status, with the
// error to print for exitBadInput.
func runCompare(args []string, threshold string, alpha float64, htmlPath string) (int, error) {
	if len(args) != 2 {
		return exitBadInput, fmt.Errorf("want two reports, OLD.json and NEW.json; got %d argument(s)", len(args))
	}
	t, err := parseThreshold(threshold)
	if err != nil {
		return exitBadInput, err
	}
	if math.IsNaN(alpha) || alpha <= 0 || alpha >= 1 {
		return exitBadInput, fmt.Errorf("--alpha %g: out of range: want more than 0 and less than 1", alpha)
	}
	oldPath, newPath := args[0], args[1]
	old, err := report.ReadJSON(oldPath)
	if err != nil {
		return exitBadInput, err
	}
	new, err := report.ReadJSON(newPath)
	if err != nil {
		return exitBadInput, err
	}
	c, err := compare.Compare(old, new, compare.Options{Threshold: t, Alpha: alpha})
	if errors.Is(err, compare.ErrNoCommonResult) {
		return exitBadInput, fmt.Errorf("%s and %s: %w", oldPath, newPath, err)
	}
	if err != nil {
		return exitBadInput, fmt.Errorf("compare %s with %s: %w", oldPath, newPath, err)
	}
	c.Old.Source, c.New.Source = oldPath, newPath
	if htmlPath != "" {
		var page bytes.Buffer
		if err := c.WriteHTML(&page); err != nil {
			return exitBadInput, err
		}
		if err := os.WriteFile(htmlPath, page.Bytes(), 0o644); err != nil {
			return exitBadInput, fmt.Errorf("--html: %w", err)
		}
	}
	if err := c.WriteMarkdown(os.Stdout); err != nil {
		return exitBadInput, err
	}
	if len(c.Regressions) > 0 {
		return exitRegression, nil
	}
	return 0, nil
}

// parseThreshold reads --threshold: a percentage ("5%") or a fraction
// ("0.05"), more than 0 and less than 100%.
func parseThreshold(s string) (float64, error) {
	text := strings.TrimSpace(s)
	pct := strings.HasSuffix(text, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(text, "%")), 64)
	if err != nil {
		return 0, fmt.Errorf("--threshold %q: want a percentage like 5%% or a fraction like 0.05", s)
	}
	if pct {
		v /= 100
	}
	if math.IsNaN(v) || v <= 0 || v >= 1 {
		hint := ""
		if !pct && v >= 1 && v < 100 {
			hint = fmt.Sprintf(" (a number without %% is a fraction: did you mean %s%%?)", text)
		}
		return 0, fmt.Errorf("--threshold %s: out of range: want more than 0%% and less than 100%%%s", s, hint)
	}
	return v, nil
}
