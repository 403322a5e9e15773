package pgfast

import (
	"context"
	"time"

	"testing"

	"github.com/pgfast/pgfast/internal/netfault"
)

// faultDefaultsLimit is how soon after the drop a query in flight must fail
// with pgfast's defaults (issue 10: 12 s; it was 25.5 s with the old default
// TCP_USER_TIMEOUT of 25 s). The dead-peer watcher declares the server silent
// once the first keep-alive probe (keepalives_idle=10s after the last ACK)
// has gone unanswered for a second: about 11 s after the last ACK.
const faultDefaultsLimit = 12 * time.Second

// faultActiveBlackholeDefaults: the network dies under a running query, with
// pgfast's default TCP settings (no TCP_USER_TIMEOUT on the socket).
func faultActiveBlackholeDefaults(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, c, _ := e.open(b, faultDSN(port))
	e.mustReady(c)
	raw := e.openRaw(b, faultDSN(port))
	raw.mustPing(t)

	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT pg_sleep(30)"))
	rawCh := e.async(faultExec(e.ctx, raw.db, "SELECT pg_sleep(30)"))
	time.Sleep(300 * time.Millisecond)
	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})

	took := faultMustFailWithin(t, pgfastCh, dropAt, faultDefaultsLimit)
	faultMeasure(t, "active-blackhole-defaults", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
}

// faultActiveBlackholeUnackedDefaults: the network is already dead when a
// query is sent on an idle pooled connection, with pgfast's defaults: the
// query's bytes stay unacknowledged and the watcher ends it at the window.
func faultActiveBlackholeUnackedDefaults(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, c, _ := e.open(b, faultDSN(port))
	e.mustReady(c)
	e.warm(db, 1)
	raw := e.openRaw(b, faultDSN(port))
	e.warm(raw.db, 1)

	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})
	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT 1"))
	rawCh := e.async(faultExec(e.ctx, raw.db, "SELECT 1"))

	took := faultMustFailWithin(t, pgfastCh, dropAt, faultDefaultsLimit)
	faultMeasure(t, "active-blackhole-unacked-defaults", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
}
