package pgfast

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/netfault"
)

// The real-network fault suite. TestFaults re-executes this test binary in a
// network namespace of its own (internal/netfault) where TestFaultSuite
// starts PostgreSQL servers on 127.0.0.1 and ::1 and drops their traffic with
// nft rules. Only loopback addresses are used.
//
// Every scenario runs for each front end (frontend_test.go: database/sql
// with pgx or lib/pq, and pgx's native pool), with the same DSN
// (host=localhost, which resolves to ::1 first) against pgfast and, side by
// side, against the raw baseline (raw pgx stdlib, lib/pq or pgxpool.New).
// Each logs one line
//
//	MEASURE scenario=<name> backend=<pgfast|pgfast-pq|pgfast-pgxpool> pgfast=<duration> raw=<duration or ">cap">
//
// PGFAST_FAULT_RUN narrows the scenarios (a -run pattern for the subtests of
// TestFaultSuite, e.g. "active-blackhole$/pgfast-pgxpool") and
// PGFAST_FRONTENDS the front ends (e.g. "pgxpool").
//
// and asserts pgfast's behaviour with generous time bounds (behaviour, not
// speed). The raw drivers' runs are only measured, never asserted, and are
// abandoned at their cap; the scenario's cleanup unblocks them by removing
// the rules and closing their sockets (recorded by a dial hook that keeps the
// raw driver's own dialer), so that no goroutine outlives the scenario.

const (
	// faultSuiteCap bounds the whole namespace child process.
	faultSuiteCap = 8 * time.Minute
	// faultRawCapShort bounds a raw driver's connection attempt.
	faultRawCapShort = 8 * time.Second
	// faultRawCapLong bounds a raw driver's query on a dead network.
	faultRawCapLong = 12 * time.Second
	// faultOpenBound is how long opening may take (sql.OpenDB on a new
	// connector, or NewPool: "returns at once").
	faultOpenBound = 100 * time.Millisecond
	// faultAfterDropCap is how long the suite waits for a pgfast call on a
	// dead network before declaring it hung.
	faultAfterDropCap = 15 * time.Second
)

// faultTCPKeys are the libpq TCP settings of the blackhole scenarios: a dead
// peer is detected after keepalives_idle + keepalives_count ×
// keepalives_interval = 3 s, and unacknowledged data may wait 3 s.
var faultTCPKeys = []string{"keepalives_idle=1", "keepalives_interval=1", "keepalives_count=2", "tcp_user_timeout=3000"}

// faultKeepaliveBudget is how long the kernel takes to declare an idle
// connection dead with faultTCPKeys.
const faultKeepaliveBudget = 1*time.Second + 2*1*time.Second

// faultEnvRun narrows the scenarios TestFaults runs (see above).
const faultEnvRun = "PGFAST_FAULT_RUN"

func TestFaults(t *testing.T) {
	pattern := "^TestFaultSuite$"
	if sub := os.Getenv(faultEnvRun); sub != "" {
		pattern += "/" + sub
	}
	netfault.RunInNamespace(t, pattern, map[string][]string{"localhost": {"::1", "127.0.0.1"}}, faultSuiteCap)
}

// faultScenario is one row of the suite.
type faultScenario struct {
	name string
	cap  time.Duration // hard cap of one front end's run
	run  func(t *testing.T, fe frontEnd)
}

var faultScenarios = []faultScenario{
	{"ipv6-blackhole-ipv4-up", 45 * time.Second, faultIPv6BlackholeIPv4Up},
	{"ipv6-blackhole-ipv4-refused", 60 * time.Second, faultIPv6BlackholeIPv4Refused},
	{"active-blackhole", 60 * time.Second, faultActiveBlackhole},
	{"active-blackhole-unacked", 60 * time.Second, faultActiveBlackholeUnacked},
	{"active-blackhole-defaults", 60 * time.Second, faultActiveBlackholeDefaults},
	{"active-blackhole-unacked-defaults", 60 * time.Second, faultActiveBlackholeUnackedDefaults},
	{"idle-blackhole", 60 * time.Second, faultIdleBlackhole},
	{"server-restart", 60 * time.Second, faultServerRestart},
	{"loss-compare", 4 * time.Minute, faultLossCompare},
	{"fleet-dead-server", 150 * time.Second, faultFleetDeadServer},
}

func TestFaultSuite(t *testing.T) {
	if !netfault.Inside() {
		t.Skip("run by TestFaults inside a network namespace")
	}
	leaks := goleak.IgnoreCurrent()
	suiteStart := time.Now()

	// Every scenario relies on localhost resolving to ::1 first.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	addrs, err := net.DefaultResolver.LookupHost(ctx, "localhost")
	cancel()
	if err != nil || len(addrs) != 2 || addrs[0] != "::1" || addrs[1] != "127.0.0.1" {
		t.Fatalf("localhost resolves to %v (%v), want [::1 127.0.0.1]", addrs, err)
	}

	for _, sc := range faultScenarios {
		t.Run(sc.name, func(t *testing.T) {
			// The front ends run at the same time (each has its own
			// server, rules and raw baseline): most of a run is waiting
			// for the raw baselines' caps; the bounds asserted are the
			// kernel's TCP timers, with slack.
			forEachFrontEndConcurrently(t, func(t *testing.T, fe frontEnd) {
				// Registered first, so it also covers the cleanups.
				t.Cleanup(faultWatchdog(t.Name(), sc.cap))
				sc.run(t, fe)
			})
		})
	}

	// A raw driver's own dial to an address that was blackholed ends only
	// when its context does or the kernel's next SYN retry lands after the
	// rules went (1, 3, 7 s…): in a full run later scenarios give it that
	// time, in a narrowed one (PGFAST_FAULT_RUN) this wait does. Bounded;
	// a goroutine still there after it is a leak.
	for deadline := time.Now().Add(20 * time.Second); goleak.Find(leaks) != nil && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
	}
	goleak.VerifyNone(t, leaks)
	t.Logf("fault suite took %v", time.Since(suiteStart).Round(time.Millisecond))
}
