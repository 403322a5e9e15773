package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// readyHookConn runs onReady when the server's first ReadyForQuery arrives
// (lib/pq's last read before returning the connection: pgfast gives lib/pq
// no connect_timeout of its own, so lib/pq sets and clears no deadline), and
// tells when a deadline in the past is set on it.
type readyHookConn struct {
	net.Conn
	onReady  func()
	once     sync.Once
	expired  chan struct{}
	expireMu sync.Once
}

func (c *readyHookConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	if !t.IsZero() && t.Before(time.Now()) {
		c.expireMu.Do(func() { close(c.expired) })
	}
	return err
}

func (c *readyHookConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// ReadyForQuery: 'Z', length 5, the transaction status.
	if n >= 6 && p[n-6] == 'Z' && p[n-5] == 0 && p[n-4] == 0 && p[n-3] == 0 && p[n-2] == 5 {
		c.once.Do(c.onReady)
	}
	return n, err
}

// TestPQConnectEndingAtHandshakeHandsOutNoExpiredSocket: when Connect's
// context ends right as lib/pq finishes the handshake, pgfast's watch has
// already expired the socket's deadline. The connection must then not be
// handed out (it would fail the next, unrelated query with i/o timeout).
func TestPQConnectEndingAtHandshakeHandsOutNoExpiredSocket(t *testing.T) {
	s := server(t)
	a, p, err := parsePQ(s.DSN(pgtest.TrustUser) + " connect_timeout=10")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configure(a, p)
	if err != nil {
		t.Fatal(err)
	}
	fired := 0
	defer func() {
		if fired == 0 {
			t.Error("the handshake hook never ran: the test exercised nothing")
		}
	}()
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		var hooked *readyHookConn
		sm := &fakeCore{cfg: cfg, dialFn: recording(func(dctx context.Context, network, address string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(dctx, network, address)
			if err != nil {
				return nil, err
			}
			hooked = &readyHookConn{Conn: nc, expired: make(chan struct{})}
			hooked.onReady = func() {
				fired++
				cancel() // Connect's context ends as the handshake completes
				select {
				case <-hooked.expired: // pgfast's watch has run
				case <-time.After(5 * time.Second):
					t.Error("the context watch never expired the socket's deadline")
				}
			}
			return hooked, nil
		})}
		dc, err := a.connector(sm).Connect(ctx)
		cancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("run %d: Connect: %v, want the context's error", i, err)
			}
			continue
		}
		qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
		rows, qerr := dc.(driver.QueryerContext).QueryContext(qctx, "SELECT 1", nil)
		if qerr == nil {
			qerr = rows.Close()
		}
		qcancel()
		dc.Close()
		if qerr != nil {
			t.Fatalf("run %d: Connect handed out a connection whose next query fails: %v", i, qerr)
		}
	}
}
