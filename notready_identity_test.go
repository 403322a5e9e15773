package pgfast

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"github.com/pgfast/pgfast/internal/netx"
)

// refusedOpError dials a loopback port where nothing listens and returns
// Go's own error for it.
func refusedOpError(t *testing.T) (*net.OpError, netip.AddrPort) {
	t.Helper()
	port := freeLoopbackPort(t)
	_, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("dial a free port: %v, want a *net.OpError", err)
	}
	return op, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

// TestNotReadyErrorIdentity: errors.Is and errors.As reach the caller's
// context error, ErrNotReady and everything in the cause; errors.Unwrap
// gives the backend's error, and lib/pq's joined per-host error when the
// cause is lib/pq's text around it.
func TestNotReadyErrorIdentity(t *testing.T) {
	op, addr := refusedOpError(t)
	dialErr := &DialError{Host: "127.0.0.1", Port: strconv.Itoa(int(addr.Port())), Attempts: []AddrStats{{Addr: addr.String(), Status: "failed", Err: op}}}
	certErr := x509.UnknownAuthorityError{}
	pqErr := &pq.Error{Code: "3D000", Message: `database "wrong" does not exist`}
	joined := errors.Join(fmt.Errorf("connecting to a:1: %w", dialErr), fmt.Errorf("connecting to b:2: %w", pqErr))
	cause := fmt.Errorf("pq: could not connect to any of the hosts:\n%w", joined)
	e := &NotReadyError{State: StateDown, Cause: cause, Err: context.DeadlineExceeded}

	for _, target := range []error{ErrNotReady, context.DeadlineExceeded, cause, joined, pqErr, dialErr} {
		if !errors.Is(e, target) {
			t.Errorf("errors.Is(%q, %q) = false", e, target)
		}
	}
	if errors.Is(e, context.Canceled) {
		t.Errorf("errors.Is(%q, context.Canceled) = true", e)
	}
	var gotPQ *pq.Error
	var gotDial *DialError
	var gotOp *net.OpError
	if !errors.As(e, &gotPQ) || !errors.As(e, &gotDial) || !errors.As(e, &gotOp) {
		t.Errorf("errors.As misses a backend type: *pq.Error %v, *DialError %v, *net.OpError %v", gotPQ, gotDial, gotOp)
	}
	jerr, ok := errors.Unwrap(e).(interface{ Unwrap() []error })
	if !ok || len(jerr.Unwrap()) != 2 {
		t.Fatalf("errors.Unwrap(%T) = %T, want lib/pq's joined per-host error", e, errors.Unwrap(e))
	}
	if msg := e.Error(); !strings.Contains(msg, "dial tcp 127.0.0.1:") || !strings.Contains(msg, `database "wrong" does not exist`) {
		t.Errorf("message %q does not keep every host's error", msg)
	}

	// pgx's *pgconn.ConnectError is the backend's error itself.
	e = &NotReadyError{State: StateDown, Cause: &pgconn.ConnectError{Config: &pgconn.Config{User: "u", Database: "d"}}}
	if _, ok := errors.Unwrap(e).(*pgconn.ConnectError); !ok {
		t.Errorf("errors.Unwrap(%T) = %T, want *pgconn.ConnectError", e, errors.Unwrap(e))
	}
	// A certificate failure, however deep.
	e = &NotReadyError{State: StateDown, Cause: fmt.Errorf("connecting: %w", fmt.Errorf("tls error: %w", certErr))}
	var ua x509.UnknownAuthorityError
	if !errors.As(e, &ua) {
		t.Errorf("errors.As(%q, x509.UnknownAuthorityError) = false", e)
	}
	// pgfast's hint around an error waiting cannot fix is its own text:
	// errors.Unwrap gives the raw driver's error, the message keeps the hint.
	e = &NotReadyError{State: StateDown, Cause: &permanentError{hint: "check sslrootcert", err: certErr}}
	if errors.Unwrap(e) != error(certErr) || !strings.Contains(e.Error(), "check sslrootcert") {
		t.Errorf("with a hint: errors.Unwrap gives %T (%q)", errors.Unwrap(e), e)
	}

	// No cause: the context's error.
	e = &NotReadyError{State: StateConnecting, Err: context.Canceled}
	if !errors.Is(e, context.Canceled) || errors.Unwrap(e) != context.Canceled {
		t.Errorf("without a cause, %q does not unwrap to context.Canceled", e)
	}
}

// TestNotReadyMessageEndsWithRawText: when the cause names every address, the
// message is the raw driver's text after pgfast's prefix, Go's "dial tcp
// ADDR: connect: ..." included.
func TestNotReadyMessageEndsWithRawText(t *testing.T) {
	op, addr := refusedOpError(t)
	dialErr := &DialError{Host: "127.0.0.1", Port: strconv.Itoa(int(addr.Port())), Attempts: []AddrStats{{Addr: addr.String(), Status: "failed", Err: op}}}
	if dialErr.Error() != op.Error() {
		t.Errorf("a one-address DialError reads %q, want Go's own %q", dialErr, op)
	}
	e := &NotReadyError{State: StateDown, Cause: dialErr, Addrs: addrStatusesOf(dialErr)}
	want := "pgfast: database not ready (down): " + op.Error()
	if e.Error() != want {
		t.Errorf("message %q, want %q", e, want)
	}
	// An attempt in flight keeps the per-address progress.
	e.Addrs = describeProgress([]AddrStats{{Addr: addr.String(), Status: "pending", Err: &netx.PendingError{Since: 2 * time.Second, Last: dialErr}}})
	if msg := e.Error(); !strings.Contains(msg, "retrying") {
		t.Errorf("message %q does not tell the attempt in flight", msg)
	}
}

// TestNotReadyErrorMultiHostRealServer: two hosts, the first refusing, the
// second without the database asked for. On both backends, raw and
// through pgfast, the error reaches the server's error and names both hosts'
// failures; on lib/pq, errors.Unwrap gives lib/pq's joined per-host error
// both ways.
func TestNotReadyErrorMultiHostRealServer(t *testing.T) {
	srv := server(t)
	free := freeLoopbackPort(t)
	dsn := fmt.Sprintf("host=127.0.0.1,%s port=%d,%d user=postgres dbname=pgfast_no_such_db sslmode=disable connect_timeout=5",
		srv.Host(), free, srv.Port())
	forEachBackend(t, func(t *testing.T, b backendCase) {
		for _, name := range []string{b.raw, b.name} {
			db, err := sql.Open(name, dsn)
			if err != nil {
				t.Fatalf("%s: sql.Open: %v", name, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
			t.Logf("%s: %v", name, err)
			if err == nil {
				t.Fatalf("%s: Ping succeeded", name)
			}
			msg := err.Error()
			if !strings.Contains(msg, "refused") || !strings.Contains(msg, "pgfast_no_such_db") {
				t.Errorf("%s: %q does not name both hosts' failures", name, msg)
			}
			var pgErr *pgconn.PgError
			var pqErr *pq.Error
			switch {
			case b.backend == PGX && (!errors.As(err, &pgErr) || pgErr.Code != "3D000"):
				t.Errorf("%s: errors.As *pgconn.PgError: %v", name, pgErr)
			case b.backend == LibPQ && (!errors.As(err, &pqErr) || pqErr.Code != "3D000"):
				t.Errorf("%s: errors.As *pq.Error: %v", name, pqErr)
			}
			if b.backend == LibPQ {
				if j, ok := errors.Unwrap(err).(interface{ Unwrap() []error }); !ok || len(j.Unwrap()) != 2 {
					t.Errorf("%s: errors.Unwrap gives %T, want lib/pq's joined error of 2", name, errors.Unwrap(err))
				}
			}
		}
	})
}
