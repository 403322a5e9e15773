package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBackend is a backend connector whose outcome the test sets: each
// Connect calls connect (nil: succeed at once).
type fakeBackend struct {
	mu      sync.Mutex
	connect func(ctx context.Context) error
	calls   atomic.Int64
	conns   []*fakeConn
}

func (f *fakeBackend) set(connect func(ctx context.Context) error) {
	f.mu.Lock()
	f.connect = connect
	f.mu.Unlock()
}

func (f *fakeBackend) Connect(ctx context.Context) (driver.Conn, error) {
	f.calls.Add(1)
	f.mu.Lock()
	connect := f.connect
	f.mu.Unlock()
	if connect != nil {
		if err := connect(ctx); err != nil {
			return nil, err
		}
	}
	fc := &fakeConn{}
	f.mu.Lock()
	f.conns = append(f.conns, fc)
	f.mu.Unlock()
	return fc, nil
}

func (f *fakeBackend) Driver() driver.Driver { return pgxDriver }

// open reports how many connections it made are still open.
func (f *fakeBackend) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.conns {
		if !c.closed.Load() {
			n++
		}
	}
	return n
}

type fakeConn struct{ closed atomic.Bool }

func (c *fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake") }
func (c *fakeConn) Close() error                        { c.closed.Store(true); return nil }
func (c *fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake") }

// fakeDSN is a DSN that the fake backend never dials.
const fakeDSN = "host=127.0.0.1 port=1 user=u dbname=d sslmode=disable connect_timeout=2"

// newFakeConnector makes a connector on fb with the given extra options.
func newFakeConnector(t *testing.T, fb *fakeBackend, o options) *Connector {
	t.Helper()
	o.testBackend = func(core) driver.Connector { return fb }
	c, err := newConnector(fakeDSN, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// netDown is a network failure as the dialer reports one.
var netDown error = &DialError{}

// waitFor waits (bounded) until c is in st.
func waitFor(t *testing.T, c *Connector, st State, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for c.State() != st {
		if time.Now().After(deadline) {
			t.Fatalf("state %s after %s, want %s", c.State(), limit, st)
		}
		time.Sleep(time.Millisecond)
	}
}
