//go:build linux

package fleet

import "fmt"

// Bound is one of issue 19's cold-start requirements: pgfast's result
// against the raw driver's of the same run (medians when there are rounds).
type Bound struct {
	// Name is the table row it judges.
	Name string
	// Count is true for the bounds on counts (tenants ready, logins,
	// goroutines), which CI checks (TestScaleCounts); the others are times, sizes and CPU,
	// checked only by scripts/scale on a machine of its own.
	Count bool
	// check returns whether fast keeps the bound and the limit it had.
	check func(raw, fast Result) (ok bool, limit string)
	// value prints what the bound judges in one result.
	value func(r Result) string
}

// Value prints what b judges in r.
func (b Bound) Value(r Result) string { return b.value(r) }

// Check judges fast against raw.
func (b Bound) Check(raw, fast Result) (ok bool, limit string) { return b.check(raw, fast) }

// Settled is the last footprint sample of r (the idle tenant, settled), or
// a zero Sample with CPU -1 when there is none.
func (r Result) Settled() Sample {
	if len(r.Samples) == 0 {
		return Sample{CPU: -1}
	}
	return r.Samples[len(r.Samples)-1]
}

// LoginsPerTenant is the server's logins for the run over its tenants.
func (r Result) LoginsPerTenant() float64 { return float64(r.Logins) / float64(max(r.Tenants, 1)) }

// Bounds are issue 19's "What it must show" for a cold start.
var Bounds = []Bound{
	// Every tenant ready is a count too: without it a pgfast whose
	// logins time out would pass the logins bound.
	{Name: "every tenant ready", Count: true, check: func(_, fast Result) (bool, string) {
		return fast.NotReady == 0, "0 not ready"
	}, value: func(r Result) string { return fmt.Sprintf("%d not ready", r.NotReady) }},
	{Name: "time until every tenant ready", check: func(raw, fast Result) (bool, string) {
		if fast.ReadyAll < 0 {
			return false, "≤ 1.1 × raw"
		}
		if raw.ReadyAll < 0 { // raw never got them all ready: pgfast did
			return true, "raw never all ready"
		}
		limit := 1.1 * raw.ReadyAll
		return fast.ReadyAll <= limit, fmt.Sprintf("≤ %.1f s (1.1 × raw)", limit)
	}, value: func(r Result) string {
		if r.ReadyAll < 0 {
			return "never"
		}
		return fmt.Sprintf("%.1f s", r.ReadyAll)
	}},
	{Name: "logins per tenant", Count: true, check: func(_, fast Result) (bool, string) {
		return fast.LoginsPerTenant() <= 1.05, "≤ 1.05"
	}, value: func(r Result) string {
		return fmt.Sprintf("%.2f (%d for %d tenants)", r.LoginsPerTenant(), r.Logins, r.Tenants)
	}},
	{Name: "goroutines per idle tenant", Count: true, check: func(raw, fast Result) (bool, string) {
		limit := raw.Settled().Goroutines + 0.1
		return fast.Settled().Goroutines <= limit, fmt.Sprintf("≤ %.2f (raw + 0.1)", limit)
	}, value: func(r Result) string { return fmt.Sprintf("%.2f", r.Settled().Goroutines) }},
	{Name: "heap per idle tenant", check: func(raw, fast Result) (bool, string) {
		limit := raw.Settled().HeapKB + 16
		return fast.Settled().HeapKB <= limit, fmt.Sprintf("≤ %.1f KB (raw + 16 KB)", limit)
	}, value: func(r Result) string { return fmt.Sprintf("%.1f KB", r.Settled().HeapKB) }},
	{Name: "idle CPU", check: func(raw, fast Result) (bool, string) {
		r, f := raw.Settled().CPU, fast.Settled().CPU
		if r < 0 || f < 0 {
			return true, "not measured"
		}
		return f <= r+0.1, fmt.Sprintf("≤ %.2f %% of a core (raw + 0.1)", r+0.1)
	}, value: func(r Result) string { return fmt.Sprintf("%.2f %%", r.Settled().CPU) }},
}
