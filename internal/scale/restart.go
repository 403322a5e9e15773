//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// restartDown is how long the server stays stopped.
const restartDown = 3 * time.Second

// restartResult is one restart run: tenants ready, the server stopped
// immediately and started restartDown later, every tenant querying every
// 100 ms throughout.
type restartResult struct {
	FrontEnd string `json:"front_end"`
	Tenants  int    `json:"tenants"`
	// NotReady tenants were not ready before the restart.
	NotReady int `json:"not_ready"`
	// Serving is, per tenant, the seconds from the start of the server's
	// start until its first successful query; -1 for never (within a
	// minute).
	Serving    []float64 `json:"serving_s"`
	Queries    int       `json:"queries"`
	Failed     int       `json:"failed"`
	FirstError string    `json:"first_error,omitempty"`
	// Logins during recovery: the server log from the stop on.
	fleet.LogCounts
}

// servingStats returns the median and max time to serving, and how many
// tenants never served.
func (r restartResult) servingStats() (p50, maxS float64, never int) {
	var ok []float64
	for _, s := range r.Serving {
		if s < 0 {
			never++
		} else {
			ok = append(ok, s)
		}
	}
	if len(ok) == 0 {
		return -1, -1, never
	}
	slices.Sort(ok)
	return median(ok), ok[len(ok)-1], never
}

// runRestart runs --rounds rounds of every chosen pair in restart mode.
func runRestart(c config) error {
	pairs, err := c.choosePairs()
	if err != nil {
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
	results := map[string][]restartResult{}
	for r := range c.rounds {
		for i := range pairs {
			p := pairs[(i+r)%len(pairs)]
			order := []*fleet.FrontEnd{p.Raw, p.Fast}
			if r%2 == 1 {
				order = []*fleet.FrontEnd{p.Fast, p.Raw}
			}
			for _, fe := range order {
				res, err := c.measureRestart(srv, fe, filepath.Join(out, fmt.Sprintf("restart-round%d-%s.json", r+1, fe.Name)))
				if err != nil {
					return err
				}
				results[fe.Name] = append(results[fe.Name], res)
			}
		}
	}
	if printRestart(os.Stdout, c, pairs, results) && !c.noCheck {
		return errMiss
	}
	return nil
}

// measureRestart runs one restart child for fe and restarts the server
// under it.
func (c config) measureRestart(srv *pgtest.Server, fe *fleet.FrontEnd, jsonPath string) (restartResult, error) {
	var res restartResult
	waitQuiet(srv)
	fmt.Fprintf(os.Stderr, "%s: %d tenants, restart\n", fe.Label, c.tenants)
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	cmd := exec.Command(self, "--restart", "--child", fe.Name, "--child-out", jsonPath,
		"--tenants", strconv.Itoa(c.tenants), "--ready-timeout", c.readyTimeout.String())
	cmd.Env = append(os.Environ(), "SCALE_DSN="+c.dsn(srv, fe))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer cmd.Wait() //nolint:errcheck // on the error paths only
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		return res, fmt.Errorf("%s: the child did not get ready", fe.Name)
	}
	go io.Copy(io.Discard, stdout)
	time.Sleep(time.Second) // the tenants serve before the restart
	mark := fleet.Mark(srv.Log())
	if err := stopImmediately(srv); err != nil {
		cmd.Process.Kill()
		return res, err
	}
	time.Sleep(restartDown)
	fmt.Fprintf(stdin, "%d\n", time.Now().UnixNano())
	t0 := time.Now()
	if err := srv.Start(); err != nil {
		cmd.Process.Kill()
		return res, err
	}
	fmt.Fprintf(os.Stderr, "  server started in %.2fs (pg_ctl start -w)\n", time.Since(t0).Seconds())
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("%s: child: %w", fe.Name, err)
	}
	waitQuiet(srv)
	data, err := os.ReadFile(jsonPath)
	if err == nil {
		err = json.Unmarshal(data, &res)
	}
	if err != nil {
		return res, fmt.Errorf("%s: result: %w", fe.Name, err)
	}
	res.LogCounts = fleet.CountLog(mark.Since(srv.Log()), fe.Role())
	p50, maxS, never := res.servingStats()
	fmt.Fprintf(os.Stderr, "  serving after the start: p50 %.2fs, max %.2fs, never %d; logins %d, FATAL %d %v\n",
		p50, maxS, never, res.Logins, res.Fatals, res.FatalKinds)
	data, _ = json.MarshalIndent(res, "", "  ")
	return res, os.WriteFile(jsonPath, data, 0o644)
}

// stopImmediately is pg_ctl stop -m immediate: SIGQUIT to the postmaster,
// then it waits (at most 15 s) for it to exit.
func stopImmediately(srv *pgtest.Server) error {
	data, err := os.ReadFile(filepath.Join(srv.DataDir(), "postmaster.pid"))
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return fmt.Errorf("postmaster.pid: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		return err
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
	}
	return fmt.Errorf("the postmaster (%d) did not exit 15 s after SIGQUIT", pid)
}

// runRestartChild opens and readies the tenants, says "ready" on stdout,
// queries from every tenant every 100 ms and, once stdin gives the moment
// the server's start began, waits until every tenant has served after it
// (at most a minute).
func runRestartChild(c config, fe *fleet.FrontEnd) error {
	lg := log.New(os.Stderr, "  ", log.Ltime)
	res := restartResult{FrontEnd: fe.Name, Tenants: c.tenants, Serving: make([]float64, c.tenants)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tenants := make([]fleet.Tenant, c.tenants)
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for i := range tenants {
		t, err := fe.Open(ctx, os.Getenv("SCALE_DSN"))
		if err != nil {
			return err
		}
		tenants[i] = t
		wg.Go(func() {
			rctx, rcancel := context.WithTimeout(ctx, c.readyTimeout)
			defer rcancel()
			if err := t.Ready(rctx); err != nil {
				mu.Lock()
				res.NotReady++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	lg.Printf("%s: %d/%d ready in %.1fs", fe.Name, c.tenants-res.NotReady, c.tenants, time.Since(start).Seconds())
	defer func() {
		for _, t := range tenants {
			t.Close()
		}
	}()

	var t0 atomic.Int64 // the server's start began (unix ns); 0: not yet
	served := make([]atomic.Int64, c.tenants)
	var queries, failed atomic.Int64
	loops, stopLoops := context.WithCancel(ctx)
	var lw sync.WaitGroup
	for i, t := range tenants {
		lw.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				qctx, qcancel := context.WithTimeout(loops, 2*time.Second)
				err := t.Exec(qctx)
				qcancel()
				end := time.Now().UnixNano()
				queries.Add(1)
				if err != nil && loops.Err() == nil {
					failed.Add(1)
					mu.Lock()
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
					mu.Unlock()
				}
				if s := t0.Load(); err == nil && s != 0 && end >= s {
					served[i].CompareAndSwap(0, end)
				}
				select {
				case <-loops.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	fmt.Println("ready")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		stopLoops()
		lw.Wait()
		return fmt.Errorf("reading the start moment: %w", err)
	}
	s, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		stopLoops()
		lw.Wait()
		return err
	}
	t0.Store(s)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		all := true
		for i := range served {
			if served[i].Load() == 0 {
				all = false
				break
			}
		}
		if all {
			break
		}
	}
	stopLoops()
	lw.Wait()
	for i := range served {
		res.Serving[i] = -1
		if at := served[i].Load(); at != 0 {
			res.Serving[i] = float64(at-s) / 1e9
		}
	}
	res.Queries, res.Failed = int(queries.Load()), int(failed.Load())
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(c.childOut, data, 0o644)
}

// printRestart prints the restart table: time to serving per tenant (p50
// and max, medians over the rounds) and logins during recovery, raw and
// pgfast side by side, with issue 19's bounds (every tenant serving no
// later than raw's slowest; ≤ 1.1 logins per tenant).
func printRestart(w io.Writer, c config, pairs []fleet.Pair, results map[string][]restartResult) (missed bool) {
	fmt.Fprintf(w, "\nRestart under %d tenants per front end (pg_ctl stop -m immediate, start %s later), %d round(s) (medians); times from the start of the server's start\n",
		c.tenants, restartDown, c.rounds)
	type summary struct{ p50, max, never, logins, failed, notReady float64 }
	sum := func(rs []restartResult) summary {
		var p50s, maxs, nevers, logins, faileds, notReadys []float64
		for _, r := range rs {
			p50, m, never := r.servingStats()
			if never > 0 {
				m = 1e9
			}
			p50s, maxs, nevers = append(p50s, p50), append(maxs, m), append(nevers, float64(never))
			logins = append(logins, float64(r.Logins)/float64(max(r.Tenants, 1)))
			faileds, notReadys = append(faileds, float64(r.Failed)), append(notReadys, float64(r.NotReady))
		}
		return summary{median(p50s), median(maxs), median(nevers), median(logins), median(faileds), median(notReadys)}
	}
	for _, p := range pairs {
		raw, fast := sum(results[p.Raw.Name]), sum(results[p.Fast.Name])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "\n\t%s\t%s\n", p.Raw.Label, p.Fast.Label)
		secs := func(v float64) string {
			if v >= 1e9 {
				return "never"
			}
			return fmt.Sprintf("%.2f s", v)
		}
		fmt.Fprintf(tw, "tenants not ready before the restart\t%.0f\t%.0f\n", raw.notReady, fast.notReady)
		fmt.Fprintf(tw, "time to serving, p50\t%s\t%s\n", secs(raw.p50), secs(fast.p50))
		fmt.Fprintf(tw, "time to serving, max\t%s\t%s\n", secs(raw.max), secs(fast.max))
		fmt.Fprintf(tw, "tenants not serving after a minute\t%.0f\t%.0f\n", raw.never, fast.never)
		fmt.Fprintf(tw, "failed queries\t%.0f\t%.0f\n", raw.failed, fast.failed)
		fmt.Fprintf(tw, "logins per tenant during recovery\t%.2f\t%.2f\n", raw.logins, fast.logins)
		tw.Flush()
		check := func(name string, ok bool, got, want string) {
			verdict := "ok  "
			if !ok {
				verdict, missed = "MISS", true
			}
			fmt.Fprintf(w, "  %s %s: %s %s, want %s\n", verdict, name, p.Fast.Label, got, want)
		}
		check("every tenant serving no later than raw", fast.max <= raw.max, secs(fast.max), "≤ "+secs(raw.max))
		check("logins during recovery", fast.logins <= 1.1, fmt.Sprintf("%.2f/tenant", fast.logins), "≤ 1.1")
	}
	return missed
}
