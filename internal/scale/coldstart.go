//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// runColdStart runs --rounds rounds of every chosen pair and prints the
// medians with issue 19's bounds.
func runColdStart(c config) error {
	pairs, err := c.choosePairs()
	if err != nil {
		return err
	}
	if _, err := c.sampleTimes(); err != nil {
		return err
	}
	out := c.out
	if out == "" {
		if out, err = os.MkdirTemp("", "scale-"); err != nil {
			return err
		}
		defer os.RemoveAll(out)
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	srv, err := startServer(c)
	if err != nil {
		return err
	}
	defer srv.Cleanup()
	defer keepLog(c, srv, "server.log")

	results := map[string][]fleet.Result{}
	for r := range c.rounds {
		for i := range pairs {
			p := pairs[(i+r)%len(pairs)] // the pair order rotates
			order := []*fleet.FrontEnd{p.Raw, p.Fast}
			if r%2 == 1 { // and which side goes first alternates
				order = []*fleet.FrontEnd{p.Fast, p.Raw}
			}
			for _, fe := range order {
				res, err := c.measure(srv, fe, filepath.Join(out, fmt.Sprintf("round%d-%s.json", r+1, fe.Name)))
				if err != nil {
					return err
				}
				results[fe.Name] = append(results[fe.Name], res)
			}
		}
	}
	missed := printTable(os.Stdout, c, pairs, results)
	if missed && !c.noCheck {
		return errMiss
	}
	return nil
}

// keepLog copies the server log into --out, if set.
func keepLog(c config, srv *pgtest.Server, name string) {
	if c.out != "" {
		_ = os.WriteFile(filepath.Join(c.out, name), []byte(srv.Log()), 0o644)
	}
}

// choosePairs parses --pairs.
func (c config) choosePairs() ([]fleet.Pair, error) {
	var pairs []fleet.Pair
	for _, name := range strings.Split(c.pairs, ",") {
		i := slices.IndexFunc(fleet.Pairs, func(p fleet.Pair) bool { return p.Raw.Name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("--pairs: unknown pair %q (pgx, pq, pgxpool)", name)
		}
		pairs = append(pairs, fleet.Pairs[i])
	}
	return pairs, nil
}

// dsn is fe's DSN on srv (see fleet.FrontEnd.DSN), with
// --raw-connect-timeout for a raw driver and --fast-dsn-extra for pgfast.
func (c config) dsn(srv *pgtest.Server, fe *fleet.FrontEnd) string {
	extra := c.fastExtra
	if fe.Raw {
		extra = ""
		if c.rawConnectTimeout > 0 {
			extra = "connect_timeout=" + strconv.Itoa(c.rawConnectTimeout)
		}
	}
	return fe.DSN(srv.Port(), pgtest.Database, false, extra)
}

// measure runs one child for fe on a quiet server and adds the server
// log's counts over the run's byte range.
func (c config) measure(srv *pgtest.Server, fe *fleet.FrontEnd, jsonPath string) (fleet.Result, error) {
	waitQuiet(srv)
	fmt.Fprintf(os.Stderr, "%s: %d tenants\n", fe.Label, c.tenants)
	mark := fleet.Mark(srv.Log())
	self, err := os.Executable()
	if err != nil {
		return fleet.Result{}, err
	}
	cmd := exec.Command(self, "--child", fe.Name, "--child-out", jsonPath,
		"--tenants", strconv.Itoa(c.tenants),
		"--ready-timeout", c.readyTimeout.String(), "--wait-cap", c.waitCap.String(),
		"--sample-at", c.sampleAt, "--cpu-window", c.cpuWindow.String(), "--cpuprofile", c.cpuProfile)
	cmd.Env = append(os.Environ(), "SCALE_DSN="+c.dsn(srv, fe))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fleet.Result{}, fmt.Errorf("%s: child: %w", fe.Name, err)
	}
	waitQuiet(srv) // every session the run started has ended and logged
	var res fleet.Result
	data, err := os.ReadFile(jsonPath)
	if err == nil {
		err = json.Unmarshal(data, &res)
	}
	if err != nil {
		return res, fmt.Errorf("%s: result: %w", fe.Name, err)
	}
	res.LogCounts = fleet.CountLog(mark.Since(srv.Log()), fe.Role())
	fmt.Fprintf(os.Stderr, "  logins %d, received %d, FATAL %d %v\n", res.Logins, res.Received, res.Fatals, res.FatalKinds)
	data, _ = json.MarshalIndent(res, "", "  ")
	return res, os.WriteFile(jsonPath, data, 0o644)
}

// median returns the median of vs (NaN when empty).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianResult is a Result whose every number is the median over rs (a
// run where some tenant was never ready counts as infinitely slow).
func medianResult(rs []fleet.Result) fleet.Result {
	if len(rs) == 0 {
		return fleet.Result{ReadyAll: -1}
	}
	of := func(f func(fleet.Result) float64) float64 {
		vs := make([]float64, len(rs))
		for i, r := range rs {
			vs[i] = f(r)
		}
		return median(vs)
	}
	m := fleet.Result{FrontEnd: rs[0].FrontEnd, Tenants: rs[0].Tenants}
	m.ReadyAll = of(func(r fleet.Result) float64 {
		if r.ReadyAll < 0 {
			return math.Inf(1)
		}
		return r.ReadyAll
	})
	if math.IsInf(m.ReadyAll, 1) {
		m.ReadyAll = -1
	}
	m.NotReady = int(of(func(r fleet.Result) float64 { return float64(r.NotReady) }))
	m.Late = int(of(func(r fleet.Result) float64 { return float64(r.Late) }))
	m.Logins = int(of(func(r fleet.Result) float64 { return float64(r.Logins) }))
	m.Received = int(of(func(r fleet.Result) float64 { return float64(r.Received) }))
	m.Fatals = int(of(func(r fleet.Result) float64 { return float64(r.Fatals) }))
	for _, r := range rs {
		if r.FirstError != "" {
			m.FirstError = r.FirstError
			break
		}
	}
	n := len(rs[0].Samples)
	for _, r := range rs {
		n = min(n, len(r.Samples))
	}
	for k := range n {
		at := func(f func(fleet.Sample) float64) float64 {
			return of(func(r fleet.Result) float64 { return f(r.Samples[k]) })
		}
		m.Samples = append(m.Samples, fleet.Sample{
			AfterReady: at(func(s fleet.Sample) float64 { return s.AfterReady }),
			Goroutines: at(func(s fleet.Sample) float64 { return s.Goroutines }),
			HeapKB:     at(func(s fleet.Sample) float64 { return s.HeapKB }),
			RSSKB:      at(func(s fleet.Sample) float64 { return s.RSSKB }),
			CPU:        at(func(s fleet.Sample) float64 { return s.CPU }),
		})
	}
	return m
}

// printTable prints the table, a block per pair with raw and
// pgfast side by side, and the bounds; it reports whether one was missed.
func printTable(w io.Writer, c config, pairs []fleet.Pair, results map[string][]fleet.Result) (missed bool) {
	fmt.Fprintf(w, "\nCold start, %d tenants per front end, %d round(s) (medians)", c.tenants, c.rounds)
	if c.rawConnectTimeout > 0 {
		fmt.Fprintf(w, ", raw with connect_timeout=%d", c.rawConnectTimeout)
	}
	fmt.Fprintln(w)
	for _, p := range pairs {
		raw, fast := medianResult(results[p.Raw.Name]), medianResult(results[p.Fast.Name])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "\n\t%s\t%s\t%s\n", p.Raw.Label, p.Fast.Label, "pgfast vs raw")
		row := func(name string, f func(fleet.Result) float64, format string, ratio bool) {
			rv, fv := f(raw), f(fast)
			cmp := fmt.Sprintf("%+.2f", fv-rv)
			if ratio {
				cmp = "—"
				if rv > 0 && fv >= 0 {
					cmp = fmt.Sprintf("%.2f×", fv/rv)
				}
			}
			fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%s\n", name, rv, fv, cmp)
		}
		notReady := fmt.Sprintf("tenants not ready after %s", c.readyTimeout)
		fmt.Fprintf(tw, "%s\t%d (late %d)\t%d (late %d)\t%+d\n", notReady, raw.NotReady, raw.Late, fast.NotReady, fast.Late, fast.NotReady-raw.NotReady)
		readyAll := func(r fleet.Result) string {
			if r.ReadyAll < 0 {
				return "never"
			}
			return fmt.Sprintf("%.1f s", r.ReadyAll)
		}
		cmp := "—"
		if raw.ReadyAll > 0 && fast.ReadyAll >= 0 {
			cmp = fmt.Sprintf("%.2f×", fast.ReadyAll/raw.ReadyAll)
		}
		fmt.Fprintf(tw, "time until every tenant ready\t%s\t%s\t%s\n", readyAll(raw), readyAll(fast), cmp)
		row("logins the server saw", func(r fleet.Result) float64 { return float64(r.Logins) }, "%.0f", true)
		row("  per tenant", fleet.Result.LoginsPerTenant, "%.2f", false)
		row("connections received", func(r fleet.Result) float64 { return float64(r.Received) }, "%.0f", true)
		row("FATALs", func(r fleet.Result) float64 { return float64(r.Fatals) }, "%.0f", false)
		for k := range min(len(raw.Samples), len(fast.Samples)) {
			at := fmt.Sprintf(" (%.0f s after ready)", raw.Samples[k].AfterReady)
			sample := func(f func(fleet.Sample) float64) func(fleet.Result) float64 {
				return func(r fleet.Result) float64 { return f(r.Samples[k]) }
			}
			row("goroutines per tenant"+at, sample(func(s fleet.Sample) float64 { return s.Goroutines }), "%.2f", false)
			row("heap KB per tenant"+at, sample(func(s fleet.Sample) float64 { return s.HeapKB }), "%.1f", false)
			row("RSS KB per tenant"+at, sample(func(s fleet.Sample) float64 { return s.RSSKB }), "%.1f", false)
			if raw.Samples[k].CPU >= 0 {
				row(fmt.Sprintf("process CPU %% of a core (%s)%s", c.cpuWindow, at), sample(func(s fleet.Sample) float64 { return s.CPU }), "%.3f", false)
			}
		}
		tw.Flush()
		for _, b := range fleet.Bounds {
			ok, limit := b.Check(raw, fast)
			verdict := "ok  "
			if !ok {
				verdict, missed = "MISS", true
			}
			fmt.Fprintf(w, "  %s %s: %s %s, want %s (raw %s)\n", verdict, b.Name, p.Fast.Label, b.Value(fast), limit, b.Value(raw))
		}
		for _, r := range []fleet.Result{raw, fast} {
			if r.FirstError != "" {
				fmt.Fprintf(w, "  first error (%s): %s\n", r.FrontEnd, oneLine(r.FirstError))
			}
		}
	}
	return missed
}

// oneLine shortens a multi-line error for the table.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
