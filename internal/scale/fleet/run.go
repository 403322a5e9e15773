//go:build linux

package fleet

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Spec describes one measured run: N tenants of one front end, opened one
// after another, each with a goroutine making its first call (Tenant.Ready)
// under a context of ReadyTimeout, as a service does at boot.
type Spec struct {
	FrontEnd *FrontEnd
	DSN      string
	Tenants  int
	// ReadyTimeout bounds each tenant's first call (60 s in the issue).
	ReadyTimeout time.Duration
	// WaitCap is how long past ReadyTimeout the run waits for calls that
	// ignore their context (raw lib/pq's Ping returns late, without
	// error); calls still out then count as not ready.
	WaitCap time.Duration
	// SampleAt are the moments, after the last tenant was ready, at which
	// the footprint is taken.
	SampleAt []time.Duration
	// Quiet, when > 0, makes each sample wait first until the goroutine
	// count has been stable for Quiet (at most 4×Quiet): a settled idle
	// tenant rather than one caught mid-wake.
	Quiet time.Duration
	// CPUWindow, when > 0, measures the process's CPU over that window
	// after each footprint.
	CPUWindow time.Duration
	// CPUProfile, when set, is a directory where each CPU window's profile
	// is written (<front end>-<n>.pprof).
	CPUProfile string
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Sample is the per-tenant footprint at one moment, net of the process's
// baseline before the first tenant was opened.
type Sample struct {
	AfterReady float64 `json:"after_ready_s"`
	Goroutines float64 `json:"goroutines_per_tenant"`
	HeapKB     float64 `json:"heap_kb_per_tenant"`
	RSSKB      float64 `json:"rss_kb_per_tenant"`
	// CPU is the whole process's CPU over Spec.CPUWindow in percent of
	// one core (not per tenant); -1 when not measured.
	CPU float64 `json:"cpu_pct_core"`
}

// Result is one run's outcome. The server-log counts are filled in by
// whoever owns the server (CountLog over the run's byte range).
type Result struct {
	FrontEnd string `json:"front_end"`
	Tenants  int    `json:"tenants"`
	// ReadyAll is the time from the first open until the last tenant's
	// first call succeeded, in seconds; -1 when some tenant never did.
	ReadyAll float64 `json:"ready_all_s"`
	// NotReady counts tenants whose first call failed or had not returned
	// at the wait cap; Late those that succeeded after their context
	// ended (a call that ignores its context).
	NotReady   int      `json:"not_ready"`
	Late       int      `json:"late"`
	FirstError string   `json:"first_error,omitempty"`
	Samples    []Sample `json:"samples"`
	LogCounts
}

// Run performs the run described by spec, closes every tenant and returns
// what it measured.
func Run(spec Spec) (Result, error) {
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := Result{FrontEnd: spec.FrontEnd.Name, Tenants: spec.Tenants, ReadyAll: -1}
	SettleGoroutines(200*time.Millisecond, time.Second)
	base := TakeFootprint()

	var (
		mu       sync.Mutex
		returned int
		last     time.Duration
		allDone  = make(chan struct{})
	)
	tenants := make([]Tenant, 0, spec.Tenants)
	defer func() { closeAll(tenants) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // the calls' own contexts end at ReadyTimeout from the first open
	start := time.Now()
	for range spec.Tenants {
		t, err := spec.FrontEnd.Open(ctx, spec.DSN)
		if err != nil {
			return res, err
		}
		tenants = append(tenants, t)
		go func() {
			callCtx, callCancel := context.WithDeadline(ctx, start.Add(spec.ReadyTimeout))
			err := t.Ready(callCtx)
			late := callCtx.Err() != nil
			callCancel()
			at := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			returned++
			switch {
			case err != nil:
				res.NotReady++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
			case late:
				res.Late++
			}
			if err == nil {
				last = max(last, at)
			}
			if returned == spec.Tenants {
				close(allDone)
			}
		}()
	}
	logf("%s: %d tenants opened in %.1fs", spec.FrontEnd.Name, spec.Tenants, time.Since(start).Seconds())
	select {
	case <-allDone:
	case <-time.After(time.Until(start.Add(spec.ReadyTimeout + spec.WaitCap))):
	}
	readyAt := time.Now()
	mu.Lock()
	res.NotReady += spec.Tenants - returned
	if res.NotReady == 0 {
		res.ReadyAll = last.Seconds()
	}
	logf("%s: ready %d/%d (late %d) after %.1fs; first error: %s", spec.FrontEnd.Name,
		spec.Tenants-res.NotReady, spec.Tenants, res.Late, time.Since(start).Seconds(), res.FirstError)
	mu.Unlock()

	n := float64(spec.Tenants)
	for _, at := range spec.SampleAt {
		time.Sleep(time.Until(readyAt.Add(at)))
		if spec.Quiet > 0 {
			SettleGoroutines(spec.Quiet, 4*spec.Quiet)
		}
		// The CPU window comes before the footprint's forced collections:
		// after them the runtime returns the freed memory to the system and
		// regrows its stack pools, and a front end with any periodic work
		// (pgfast's DNS recheck) pays that cold start inside the window,
		// which an undisturbed idle process pays once per two minutes.
		after := time.Since(readyAt).Seconds()
		cpu := -1.0
		if spec.CPUWindow > 0 {
			stop := startProfile(spec.CPUProfile, fmt.Sprintf("%s-%d.pprof", spec.FrontEnd.Name, len(res.Samples)+1), logf)
			cpu = CPUShare(spec.CPUWindow)
			stop()
		}
		fp := TakeFootprint()
		s := Sample{
			AfterReady: after,
			Goroutines: float64(fp.Goroutines-base.Goroutines) / n,
			HeapKB:     (float64(fp.HeapAlloc) - float64(base.HeapAlloc)) / n / 1024,
			RSSKB:      (float64(fp.RSS) - float64(base.RSS)) / n / 1024,
			CPU:        cpu,
		}
		logf("%s: at %.0fs: %.2f goroutines, %.1f KB heap, %.1f KB RSS per tenant, CPU %.2f%% of a core",
			spec.FrontEnd.Name, s.AfterReady, s.Goroutines, s.HeapKB, s.RSSKB, s.CPU)
		res.Samples = append(res.Samples, s)
	}
	return res, nil
}

// closeAll closes the tenants concurrently (a pool's Close waits for its
// connections).
func closeAll(tenants []Tenant) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, t := range tenants {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t.Close()
		})
	}
	wg.Wait()
}
