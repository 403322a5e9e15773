package pgfast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// ---- the raw drivers, with their sockets recorded ----

// faultRawPool is a raw-driver pool whose sockets are recorded so that the
// cleanup can close them. The recording hook wraps the driver's own default
// dialer (pgx's DialFunc from ParseConfig, lib/pq's zero net.Dialer), so the
// driver dials exactly as with sql.Open.
type faultRawPool struct {
	db feDB

	mu     sync.Mutex
	socks  []net.Conn
	closed bool
}

// errFaultRawShut is what a raw pool's dials return once the test shut it.
var errFaultRawShut = errors.New("raw pool shut by the test")

// dialed records nc, or closes it when the pool is shut already.
func (p *faultRawPool) dialed(nc net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = nc.Close()
		return nil, errFaultRawShut
	}
	p.socks = append(p.socks, nc)
	return nc, nil
}

// shut closes every socket of the pool and makes further dials fail: a call
// blocked on a socket returns, and database/sql cannot run it again on a new
// connection (pgx reports a statement whose socket was closed under it as
// driver.ErrBadConn, which database/sql retries).
func (p *faultRawPool) shut() {
	p.mu.Lock()
	socks := p.socks
	p.socks, p.closed = nil, true
	p.mu.Unlock()
	for _, nc := range socks {
		_ = nc.Close()
	}
}

// openRaw opens dsn with fe's raw baseline, its sockets recorded.
func (e *faultEnv) openRaw(fe frontEnd, dsn string) *faultRawPool {
	e.t.Helper()
	p := &faultRawPool{}
	db, err := fe.openRaw(dsn, 0, rawHooks{dialed: p.dialed})
	if err != nil {
		e.t.Fatalf("opening raw %s: %v", fe.raw, err)
	}
	p.db = db
	e.mu.Lock()
	e.raws = append(e.raws, p)
	e.mu.Unlock()
	return p
}

// mustPing connects the raw pool.
func (p *faultRawPool) mustPing(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.db.Ping(ctx); err != nil {
		t.Fatalf("raw driver: %v", err)
	}
}

// faultRaw is what a raw driver's run came to.
type faultRaw struct {
	took   time.Duration
	capped bool
	limit  time.Duration
	err    error
}

func (r faultRaw) String() string {
	if r.capped {
		return ">" + r.limit.String()
	}
	return faultDur(r.took)
}

// faultRawOutcome waits for a raw driver's run, measured from ref, until ref+limit.
func faultRawOutcome(ch <-chan faultResult, ref time.Time, limit time.Duration) faultRaw {
	r, ok := faultWait(ch, ref.Add(limit))
	if !ok {
		return faultRaw{capped: true, limit: limit}
	}
	return faultRaw{took: r.end.Sub(ref), limit: limit, err: r.err}
}

func faultDur(d time.Duration) string { return d.Round(time.Millisecond).String() }

// faultMeasure logs the comparison line the project quotes.
func faultMeasure(t *testing.T, scenario string, b frontEnd, pgfast time.Duration, raw faultRaw) {
	t.Helper()
	switch {
	case raw.capped:
		t.Logf("raw %s: no answer within the %v cap (abandoned, unblocked at cleanup)", b.raw, raw.limit)
	case raw.err != nil:
		t.Logf("raw %s: answered after %s with: %v", b.raw, faultDur(raw.took), raw.err)
	default:
		t.Logf("raw %s: succeeded after %s", b.raw, faultDur(raw.took))
	}
	t.Logf("MEASURE scenario=%s backend=%s pgfast=%s raw=%s", scenario, b.name, faultDur(pgfast), raw)
}

// faultDSN is the scenarios' DSN: localhost resolves to ::1, then 127.0.0.1.
func faultDSN(port int, kv ...string) string {
	dsn := fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=disable", port, pgtest.TrustUser, pgtest.Database)
	if len(kv) > 0 {
		dsn = withKV(dsn, kv...)
	}
	return dsn
}

// faultRemoteAddr returns the server address of a pooled connection.
func faultRemoteAddr(t *testing.T, db feDB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("checking out a connection: %v", err)
	}
	defer conn.Release()
	addr, err := conn.RemoteAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
