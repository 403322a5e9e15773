//go:build linux

package pgfast_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// scaleCountsTenants is TestScaleCounts' tenants per front end: the CI size
// of scripts/scale's cold start (1,000 there).
const scaleCountsTenants = 100

// TestScaleCounts is the CI version of scripts/scale's cold start (issue
// 19): 100 tenants per front end, each opened with a new user's DSN (SCRAM,
// the host name localhost, no pgfast_ keys) and readied by a goroutine of
// its own, for every pair of a raw driver and pgfast's wrapping of it, raw
// first, in one process against one server. It checks counts only, never
// times: every tenant ready (within 20 s), the server's logins per tenant
// (from its log, per front end's role) and the goroutines each settled idle
// tenant holds against raw's.
// Each pair × bound is a subtest, so a report shows which rows pass.
func TestScaleCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts 600 sessions")
	}
	srv, err := pgtest.New(pgtest.Options{ListenAddresses: "localhost", Settings: fleet.ServerSettings(700)})
	if errors.Is(err, pgtest.ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Cleanup)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(fleet.RolesSQL()); err != nil {
		t.Fatal(err)
	}

	mark := fleet.Mark(srv.Log())
	results := map[*fleet.FrontEnd]fleet.Result{}
	pairs := scalePairs(t)
	for _, p := range pairs {
		for _, fe := range []*fleet.FrontEnd{p.Raw, p.Fast} {
			res, err := fleet.Run(fleet.Spec{
				FrontEnd:     fe,
				DSN:          fe.DSN(srv.Port(), pgtest.Database, false, ""),
				Tenants:      scaleCountsTenants,
				Logf:         t.Logf,
				ReadyTimeout: 20 * time.Second,
				WaitCap:      2 * time.Second,
				SampleAt:     []time.Duration{2 * time.Second},
				Quiet:        300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			results[fe] = res
			// The next front end starts on a quiet server.
			if waited := fleet.WaitQuiet(srv, 10*time.Second); waited >= 10*time.Second {
				t.Logf("the server was not quiet 10 s after %s", fe.Name)
			}
		}
	}
	// Logins are counted per role over the whole test's log, once every
	// session has ended, so an attempt still in flight at Close counts too.
	log := mark.Since(srv.Log())
	for fe, res := range results {
		res.LogCounts = fleet.CountLog(log, fe.Role())
		results[fe] = res
	}

	for _, p := range pairs {
		raw, fast := results[p.Raw], results[p.Fast]
		for _, fe := range []*fleet.FrontEnd{p.Raw, p.Fast} {
			r := results[fe]
			s := r.Settled()
			t.Logf("%-12s logins %.2f/tenant (received %d, FATAL %d %v), not ready %d, goroutines %.2f/tenant, heap %.1f KB/tenant, ready in %.1fs; first error: %s",
				fe.Label, r.LoginsPerTenant(), r.Received, r.Fatals, r.FatalKinds, r.NotReady, s.Goroutines, s.HeapKB, r.ReadyAll, r.FirstError)
		}
		for _, b := range fleet.Bounds {
			if !b.Count {
				continue
			}
			t.Run(p.Fast.Name+"/"+b.Name, func(t *testing.T) {
				if ok, limit := b.Check(raw, fast); !ok {
					t.Errorf("%s: %s %s, raw %s; want %s", b.Name, p.Fast.Label, b.Value(fast), b.Value(raw), limit)
				}
			})
		}
	}
}

// scalePairs is fleet.Pairs, or only those whose pgfast front end
// PGFAST_SCALE_PAIRS names (comma-separated, e.g. "newpool"), to rerun one
// row while working on it.
func scalePairs(t *testing.T) []fleet.Pair {
	env := os.Getenv("PGFAST_SCALE_PAIRS")
	if env == "" {
		return fleet.Pairs
	}
	var pairs []fleet.Pair
	for _, name := range strings.Split(env, ",") {
		for _, p := range fleet.Pairs {
			if p.Fast.Name == strings.TrimSpace(name) {
				pairs = append(pairs, p)
			}
		}
	}
	if len(pairs) == 0 {
		t.Fatalf("PGFAST_SCALE_PAIRS=%q names no pair (pgfast, pgfast-pq, newpool)", env)
	}
	return pairs
}
