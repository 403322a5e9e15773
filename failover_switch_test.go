package pgfast

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/testkit"
)

// ---------------------------------------------------------------------------
// Scenarios 1 and 2: failover by DNS and by a multi-host DSN.

func (s *foSuite) failover(t *testing.T, b frontEnd, viaDNS bool) {
	s.failoverWith(t, b, viaDNS, false)
}

// failoverWith is failover with pgfast's default TCP settings when defaults
// is set (the dead-peer window decides, so the bounds are wider), else with
// foFastTCP. Over the pool, raw pgxpool runs the same workload side by side
// (the same DSN without pgfast's TCP keys, the same resolver for the DNS
// case), each call bounded by the hang limit, measured until pgfast's limit.
func (s *foSuite) failoverWith(t *testing.T, b frontEnd, viaDNS, defaults bool) {
	scenario := "failover-multihost"
	if viaDNS {
		scenario = "failover-dns"
	}
	tcp, limit, hang := foFastTCP, foFailoverLimit, foHangLimit
	if defaults {
		scenario += "-defaults"
		tcp, limit, hang = "", foDefaultsFailoverLimit, foDefaultsHangLimit
	}
	s.guard(t, scenario, b)
	pair := foStartPair(t)

	host := foPrimaryIP + "," + foStandbyIP
	var opts []Option
	var resolver *testkit.HostsResolver
	if viaDNS {
		host = foHostName
		setHosts := func(ip string) {
			if err := netfault.SetHosts(map[string][]string{foHostName: {ip}}); err != nil {
				t.Fatalf("SetHosts: %v", err)
			}
		}
		setHosts(foPrimaryIP)
		t.Cleanup(func() { setHosts(foPrimaryIP) })
		// The hosts file is read on every lookup: net.DefaultResolver would
		// serve its cached copy for up to 5 s after the repointing.
		resolver = &testkit.HostsResolver{}
		opts = append(opts, WithResolver(resolver))
	}
	dsn := foDSN(host, pair.port, tcp, "target_session_attrs=read-write")
	db, c, states := s.open(t, b, dsn, foWorkers, opts...)
	foReady(t, c, 15*time.Second)

	load := foStartLoadHang(db, foWorkers, foInsert, hang)
	defer load.Stop(t, 2*hang)
	var rawLoad *testkit.Load
	if b.pool {
		h := rawHooks{}
		if resolver != nil {
			h.lookup = foLookupHost(resolver)
		}
		raw := s.openRaw(t, b, foDSN(host, pair.port, "target_session_attrs=read-write"), foWorkers, h)
		rawLoad = foStartRawLoad(raw, foWorkers, foInsert, hang)
		defer rawLoad.Stop(t, 2*hang)
	}
	for _, l := range []*testkit.Load{load, rawLoad} {
		if l == nil {
			continue
		}
		if _, ok := l.WaitAllWroteOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
			t.Fatalf("not every worker wrote on the primary before the fault: %s", l.Summary())
		}
	}

	lift := foBlackhole(t, foPrimaryIP, pair.port)
	t0 := time.Now()
	if err := pair.standby.Promote(); err != nil {
		t.Fatalf("promoting the standby: %v", err)
	}
	promoted := time.Since(t0)
	if viaDNS {
		if err := netfault.SetHosts(map[string][]string{foHostName: {foStandbyIP}}); err != nil {
			t.Fatalf("SetHosts: %v", err)
		}
	}
	repointed := time.Since(t0)

	converged, ok := load.WaitAllWroteOn(foStandbyIP, t0, t0.Add(limit))
	load.Stop(t, 2*hang)
	if rawLoad != nil {
		// Measured, not asserted, until pgfast's limit; then the blackhole
		// is lifted, which ends the raw calls still waiting on the old
		// primary (each is bounded by hang anyway).
		rawConv, rawOK := rawLoad.WaitAllWroteOn(foStandbyIP, t0, t0.Add(limit))
		rawAll := foDur(rawConv, rawOK)
		if !rawOK {
			rawAll = ">" + limit.String()
		}
		t.Logf("MEASURE scenario=%s backend=%s all_on_new_primary=%s first_on_new_primary=%v longest_query=%v errors=%d writes=%d (raw baseline: measured, not asserted; calls bounded by %v)",
			scenario, b.raw, rawAll, foDur(rawLoad.FirstWroteOn(foStandbyIP, t0)), rawLoad.Longest().Round(time.Millisecond), rawLoad.ErrorCount(), rawLoad.Writes(), hang)
		t.Logf("%s raw %s: errors by kind %v; samples %q", scenario, b.raw, rawLoad.Kinds(), rawLoad.Samples())
		lift()
		rawLoad.Stop(t, 2*hang)
	}
	if !ok {
		t.Errorf("not every worker wrote on the new primary within %v of the blackhole: %s", limit, load.Summary())
	}
	// Once the connector is ready again (on the new primary), every worker
	// must be writing there promptly: nothing may hold the application back
	// after pgfast knows where the database is.
	if readyAt, rok := states.after(StateReady, t0); ok && rok && converged-readyAt > foAfterReadyLimit {
		t.Errorf("every worker wrote on the new primary only %v after the connector was ready again (ready %v, all %v), want within %v%s",
			(converged - readyAt).Round(time.Millisecond), readyAt.Round(time.Millisecond), converged.Round(time.Millisecond), foAfterReadyLimit, foAfterReadyHint(b))
	}
	if hangs := load.Hangs(); hangs > 0 {
		t.Errorf("%d calls took longer than %v", hangs, hang)
	}
	if longest := load.Longest(); longest > hang {
		t.Errorf("the longest call took %v, limit %v", longest, hang)
	}
	foAssertNoConnsTo(t, c, foPrimaryIP, pair.port)
	st := c.Stats()
	extra := ""
	if resolver != nil {
		extra = fmt.Sprintf(" lookups=%d", resolver.Lookups())
	}
	t.Logf("MEASURE scenario=%s backend=%s all_on_new_primary=%v first_on_new_primary=%v longest_query=%v down_after=%v ready_after=%v promote=%v repoint=%v errors=%d not_ready=%d other_errors=%d writes=%d evictions=%d dials=%d dial_failures=%d%s",
		scenario, b.name, foDur(converged, ok), foDur(load.FirstWroteOn(foStandbyIP, t0)), load.Longest().Round(time.Millisecond),
		foDur(states.after(StateDown, t0)), foDur(states.after(StateReady, t0)), promoted.Round(time.Millisecond), repointed.Round(time.Millisecond),
		load.ErrorCount(), load.Kind("not-ready"), load.ErrorCount()-load.Kind("not-ready"), load.Writes(), st.Evictions, st.Dials, st.DialFailures, extra)
	t.Logf("%s: errors by kind %v; samples %q", scenario, load.Kinds(), load.Samples())
	lift()
}

// ---------------------------------------------------------------------------
// Scenario 1b: the name moves to another writable server while the old one
// stays reachable (a switchover): pgfast_dns_recheck (default 5 s for host
// names) must move the pool.

// There is no raw baseline: raw pgx and pgxpool resolve a name only when
// they dial, and a healthy pool does not dial (they would stay on the old
// server until their connections' lifetime ends, an hour by default).
func (s *foSuite) dnsRepoint(t *testing.T, b frontEnd) {
	const scenario = "dns-repoint-reachable"
	s.guard(t, scenario, b)
	pair := foStartPair(t)
	if err := pair.standby.Promote(); err != nil { // two writable servers
		t.Fatalf("promoting the standby: %v", err)
	}
	setHosts := func(ip string) {
		if err := netfault.SetHosts(map[string][]string{foHostName: {ip}}); err != nil {
			t.Fatalf("SetHosts: %v", err)
		}
	}
	setHosts(foPrimaryIP)
	t.Cleanup(func() { setHosts(foPrimaryIP) })
	resolver := &testkit.HostsResolver{} // reads the hosts file on every lookup (Go's resolver caches it for 5 s)
	dsn := foDSN(foHostName, pair.port, foFastTCP, "target_session_attrs=read-write")
	db, c, _ := s.open(t, b, dsn, foWorkers, WithResolver(resolver))
	foReady(t, c, 15*time.Second)
	recheck := c.Config().DNSRecheck
	if recheck <= 0 {
		t.Fatalf("DNSRecheck = %v for a host name, want the default", recheck)
	}

	load := foStartLoad(db, foWorkers, foInsert)
	defer load.Stop(t, 2*foHangLimit)
	if _, ok := load.WaitAllWroteOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
		t.Fatalf("not every worker wrote on the first server: %s", load.Summary())
	}
	t0 := time.Now()
	setHosts(foStandbyIP)
	limit := recheck + 3*time.Second
	converged, ok := load.WaitAllWroteOn(foStandbyIP, t0, t0.Add(limit))
	load.Stop(t, 2*foHangLimit)
	if !ok {
		t.Errorf("not every worker wrote on the server the name points to within %v (recheck every %v): %s", limit, recheck, load.Summary())
	}
	if hangs := load.Hangs(); hangs > 0 {
		t.Errorf("%d calls took longer than %v", hangs, foHangLimit)
	}
	foAssertNoConnsTo(t, c, foPrimaryIP, pair.port)
	st := c.Stats()
	if st.State != StateReady {
		t.Errorf("state %v after the repointing, want ready (the old server was never down)", st.State)
	}
	t.Logf("MEASURE scenario=%s backend=%s all_on_new_server=%v first_on_new_server=%v dns_recheck=%v errors=%d not_ready=%d longest_query=%v evictions=%d state_changes=%d lookups=%d",
		scenario, b.name, foDur(converged, ok), foDur(load.FirstWroteOn(foStandbyIP, t0)), recheck, load.ErrorCount(), load.Kind("not-ready"),
		load.Longest().Round(time.Millisecond), st.Evictions, st.StateChanges, resolver.Lookups())
	t.Logf("%s: errors by kind %v; samples %q", scenario, load.Kinds(), load.Samples())
}

// foAfterReadyLimit bounds the time from the connector's return to Ready to
// the last worker's first write on the new primary (database/sql: ~0.1 s).
const foAfterReadyLimit = 2 * time.Second

// foAfterReadyHint explains the pool front end's known failure of that bound.
func foAfterReadyHint(b frontEnd) string {
	if !b.pool {
		return ""
	}
	return " (known over pgxpool: pgx's asyncClose of each evicted connection dials a CancelRequest to the dead primary " +
		"through pgfast's dialer, bounded only by the per-address connect timeout, and pgxpool's destructor waits for " +
		"that cleanup while holding the pool slot, so no new connection can be made meanwhile; see notes/r5-frontends.md)"
}
