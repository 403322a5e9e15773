package pgfast

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// sslRequestCode is the protocol code of PostgreSQL's SSLRequest message.
const sslRequestCode = 80877103

// firstMessageConn is a fake socket that records whether the first message
// written to it is an SSLRequest, then fails the attempt.
type firstMessageConn struct {
	net.Conn
	record func(tls bool)
	once   sync.Once
}

var errFakeAttempt = errors.New("fake attempt ends here")

func (c *firstMessageConn) Write(p []byte) (int, error) {
	c.once.Do(func() {
		c.record(len(p) >= 8 && binary.BigEndian.Uint32(p[4:8]) == sslRequestCode)
	})
	return 0, errFakeAttempt
}
func (c *firstMessageConn) Read([]byte) (int, error)         { return 0, errFakeAttempt }
func (c *firstMessageConn) Close() error                     { return nil }
func (c *firstMessageConn) SetDeadline(time.Time) error      { return nil }
func (c *firstMessageConn) SetReadDeadline(time.Time) error  { return nil }
func (c *firstMessageConn) SetWriteDeadline(time.Time) error { return nil }
func (c *firstMessageConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *firstMessageConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

type pgxAttempt struct {
	addr string
	tls  bool
}

// pgxAttemptOrder connects once through the pgx adapter with every attempt
// failing, and returns the attempts pgx made, in order.
func pgxAttemptOrder(t *testing.T, dsn string) []pgxAttempt {
	t.Helper()
	a, p, err := parsePGX(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := buildConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	book := netx.NewBook(nil)
	var (
		mu       sync.Mutex
		attempts []pgxAttempt
	)
	s := &fakeCore{
		cfg: cfg,
		dialFn: func(_ context.Context, _, address string) (net.Conn, error) {
			return &firstMessageConn{record: func(tls bool) {
				mu.Lock()
				attempts = append(attempts, pgxAttempt{addr: address, tls: tls})
				mu.Unlock()
			}}, nil
		},
		orderHostsFn: func(hosts []HostPort) []int {
			return orderHosts(book, hosts, cfg.LoadBalanceHosts == "random")
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if dc, err := a.connector(s).Connect(ctx); err == nil {
		dc.Close()
		t.Fatal("connected through a fake socket")
	}
	mu.Lock()
	defer mu.Unlock()
	return attempts
}

// TestPGXLoadBalanceKeepsTLSFirstPerHost: with sslmode=prefer and
// load_balance_hosts=random, pgx must try each host with TLS before its
// plaintext fallback, whatever order the hosts are shuffled into (libpq
// shuffles hosts, not attempts). Before host groups, plaintext came first
// for about half the connects.
func TestPGXLoadBalanceKeepsTLSFirstPerHost(t *testing.T) {
	for dsn, hosts := range map[string]int{
		"host=a.invalid port=5432 user=u sslmode=prefer load_balance_hosts=random":                     1,
		"host=a.invalid,b.invalid port=5432 user=u sslmode=prefer load_balance_hosts=random":           2,
		"host=a.invalid,b.invalid,c.invalid port=1,2,3 user=u sslmode=allow load_balance_hosts=random": 3,
	} {
		const runs = 1000
		wrongFirst, split, firsts := 0, 0, map[string]int{}
		allow := strings.Contains(dsn, "sslmode=allow")
		for range runs {
			attempts := pgxAttemptOrder(t, dsn)
			if len(attempts) != 2*hosts {
				t.Fatalf("%s: %d attempts %v, want %d", dsn, len(attempts), attempts, 2*hosts)
			}
			seen := map[string]bool{}
			badFirst, badSplit := false, false
			for i, at := range attempts {
				if !seen[at.addr] {
					seen[at.addr] = true
					// prefer: TLS first; allow: plaintext first.
					badFirst = badFirst || at.tls == allow
					// A host's two attempts are adjacent.
					badSplit = badSplit || i+1 >= len(attempts) || attempts[i+1].addr != at.addr || attempts[i+1].tls == at.tls
				}
			}
			if badFirst {
				wrongFirst++
			}
			if badSplit {
				split++
			}
			if len(attempts) > 0 {
				firsts[attempts[0].addr]++
			}
		}
		if wrongFirst != 0 || split != 0 {
			t.Errorf("%s: of %d connects, %d tried a host in the wrong TLS order, %d split a host's attempts", dsn, runs, wrongFirst, split)
		}
		if hosts > 1 && len(firsts) < 2 {
			t.Errorf("%s: load_balance_hosts=random always started with the same host: %v", dsn, firsts)
		}
	}
}
