//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// idleResult is one --idle run: the footprint per tenant as the tenants
// grow, to see that it is linear.
type idleResult struct {
	FrontEnd string      `json:"front_end"`
	Points   []idlePoint `json:"points"`
	Errors   int         `json:"not_ready"`
	First    string      `json:"first_error,omitempty"`
}

// idlePoint is the footprint per tenant with Tenants open, ready and idle.
type idlePoint struct {
	Tenants int          `json:"tenants"`
	Sample  fleet.Sample `json:"sample"`
}

// checkpoints are the tenant counts at which --idle N takes the footprint:
// 1k, 2k, 5k, 10k, 20k, 50k, ... below N, then N.
func checkpoints(n int) []int {
	var cs []int
	for scale := 1000; ; scale *= 10 {
		for _, m := range []int{1, 2, 5} {
			if m*scale >= n {
				return append(cs, n)
			}
			cs = append(cs, m*scale)
		}
	}
}

// runIdle runs every chosen front end with --idle tenants spread over
// --servers servers and prints the footprint per tenant at each
// checkpoint.
func runIdle(c config) error {
	pairs, err := c.choosePairs()
	if err != nil {
		return err
	}
	k := c.servers
	if k <= 0 {
		k = (c.idle + 1999) / 2000
	}
	srvs, err := startServers(c, k)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range srvs {
			s.Cleanup()
		}
	}()
	out := c.out
	if out == "" {
		if out, err = os.MkdirTemp("", "scale-"); err != nil {
			return err
		}
		defer os.RemoveAll(out)
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	results := map[string]idleResult{}
	for _, p := range pairs {
		for _, fe := range []*fleet.FrontEnd{p.Raw, p.Fast} {
			res, err := c.measureIdle(srvs, fe, filepath.Join(out, "idle-"+fe.Name+".json"))
			if err != nil {
				return err
			}
			results[fe.Name] = res
		}
	}
	printIdle(os.Stdout, c, k, pairs, results)
	return nil
}

// measureIdle runs one idle child for fe.
func (c config) measureIdle(srvs []*pgtest.Server, fe *fleet.FrontEnd, jsonPath string) (idleResult, error) {
	var res idleResult
	for _, s := range srvs {
		waitQuiet(s)
	}
	fmt.Fprintf(os.Stderr, "%s: %d idle tenants over %d server(s)\n", fe.Label, c.idle, len(srvs))
	var dsns []string
	for _, s := range srvs {
		dsns = append(dsns, c.dsn(s, fe))
	}
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	cmd := exec.Command(self, "--child", fe.Name, "--child-out", jsonPath, "--idle", strconv.Itoa(c.idle),
		"--ready-timeout", c.readyTimeout.String())
	cmd.Env = append(os.Environ(), "SCALE_DSN="+strings.Join(dsns, "\n"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("%s: child: %w", fe.Name, err)
	}
	data, err := os.ReadFile(jsonPath)
	if err == nil {
		err = json.Unmarshal(data, &res)
	}
	return res, err
}

// runIdleChild opens the tenants checkpoint by checkpoint (tenant i on
// server i mod K), readies each batch, lets it settle 3 s and takes the
// footprint.
func runIdleChild(c config, fe *fleet.FrontEnd) error {
	lg := log.New(os.Stderr, "  ", log.Ltime)
	dsns := strings.Split(os.Getenv("SCALE_DSN"), "\n")
	res := idleResult{FrontEnd: fe.Name}
	fleet.SettleGoroutines(200*time.Millisecond, time.Second)
	base := fleet.TakeFootprint()
	var tenants []fleet.Tenant
	defer func() {
		for _, t := range tenants {
			t.Close()
		}
	}()
	var mu sync.Mutex
	for _, cp := range checkpoints(c.idle) {
		ctx, cancel := context.WithTimeout(context.Background(), c.readyTimeout)
		var wg sync.WaitGroup
		for i := len(tenants); i < cp; i++ {
			t, err := fe.Open(ctx, dsns[i%len(dsns)])
			if err != nil {
				cancel()
				return err
			}
			tenants = append(tenants, t)
			wg.Go(func() {
				if err := t.Ready(ctx); err != nil {
					mu.Lock()
					res.Errors++
					if res.First == "" {
						res.First = err.Error()
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		cancel()
		time.Sleep(3 * time.Second)
		fp := fleet.TakeFootprint()
		n := float64(cp)
		s := fleet.Sample{
			Goroutines: float64(fp.Goroutines-base.Goroutines) / n,
			HeapKB:     (float64(fp.HeapAlloc) - float64(base.HeapAlloc)) / n / 1024,
			RSSKB:      (float64(fp.RSS) - float64(base.RSS)) / n / 1024,
			CPU:        -1,
		}
		lg.Printf("%s: %d tenants (%d not ready): %.2f goroutines, %.1f KB heap, %.1f KB RSS per tenant",
			fe.Name, cp, res.Errors, s.Goroutines, s.HeapKB, s.RSSKB)
		res.Points = append(res.Points, idlePoint{Tenants: cp, Sample: s})
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(c.childOut, data, 0o644)
}

// printIdle prints, per front end, the footprint per tenant at each
// checkpoint.
func printIdle(w io.Writer, c config, servers int, pairs []fleet.Pair, results map[string]idleResult) {
	fmt.Fprintf(w, "\nIdle tenants over %d server(s), each ready then idle 3 s; per tenant\n", servers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\ntenants\tfront end\tgoroutines\theap KB\tRSS KB\tnot ready\n")
	for _, p := range pairs {
		for _, fe := range []*fleet.FrontEnd{p.Raw, p.Fast} {
			r := results[fe.Name]
			for _, pt := range r.Points {
				fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.1f\t%.1f\t%d\n", pt.Tenants, fe.Label, pt.Sample.Goroutines, pt.Sample.HeapKB, pt.Sample.RSSKB, r.Errors)
			}
		}
	}
	tw.Flush()
	for _, p := range pairs {
		for _, fe := range []*fleet.FrontEnd{p.Raw, p.Fast} {
			if r := results[fe.Name]; r.First != "" {
				fmt.Fprintf(w, "first error (%s): %s\n", fe.Name, oneLine(r.First))
			}
		}
	}
}
