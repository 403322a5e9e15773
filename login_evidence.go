package pgfast

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pgfast/pgfast/internal/netx"
)

// What a failed login says about its server, by what its sockets saw
// (docs/design/fleet.md §3.6): no TCP handshake is connect evidence (the
// host or path); a handshake and no byte is startup evidence (a frozen
// server, or one too busy to answer anyone); a byte, or any server error, is
// a slow or refusing server: the login fails to its caller only, never Down.

// loginEvidence classifies one failed login.
type loginEvidence uint8

const (
	// loginConnect: no socket was made (the dial failed, or nothing was
	// dialled): judged by the error alone, as before.
	loginConnect loginEvidence = iota
	// loginUnanswered: a handshake completed, no byte came from the server,
	// and no socket of the process heard its address since: it may be
	// frozen (SIGSTOP), judged as connect evidence is.
	loginUnanswered
	// loginAnswered: the server spoke (to this login, or to anyone at that
	// address since its handshake), or answered with an error: slow or
	// refusing, not dead.
	loginAnswered
)

// loginRecord collects the sockets one login (a connector's attempt, a
// caller's dial, one pgxpool connect) made, through its context.
type loginRecord struct {
	mu    sync.Mutex
	socks []net.Conn
	made  atomic.Int32 // sockets made (handshakes completed)
}

type loginRecordKey struct{}

func withLoginRecord(ctx context.Context) (context.Context, *loginRecord) {
	rec := &loginRecord{}
	return context.WithValue(ctx, loginRecordKey{}, rec), rec
}

func loginRecordOf(ctx context.Context) *loginRecord {
	rec, _ := ctx.Value(loginRecordKey{}).(*loginRecord)
	return rec
}

// witnessing wraps dial so the sockets made under a withLoginRecord context
// are remembered there.
func witnessing(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := dial(ctx, network, address)
		if err == nil {
			if rec := loginRecordOf(ctx); rec != nil {
				rec.mu.Lock()
				rec.socks = append(rec.socks, nc)
				rec.mu.Unlock()
				rec.made.Add(1)
			}
		}
		return nc, err
	}
}

// handshaken reports whether the login completed a TCP handshake: past that
// point another attempt beside it would only load a slow server more.
func (r *loginRecord) handshaken() bool { return r != nil && r.made.Load() > 0 }

// evidence classifies the login's failure err. Only a server error or a
// timeout can be a slow server's; any other failure after the server spoke
// (a role target_session_attrs refuses, a TLS error) is judged by the error
// alone, as before.
func (r *loginRecord) evidence(err error) loginEvidence {
	if isServerError(err) {
		return loginAnswered
	}
	if r == nil || !isTimeout(err) {
		return loginConnect
	}
	r.mu.Lock()
	socks := r.socks
	r.mu.Unlock()
	if len(socks) == 0 {
		return loginConnect
	}
	for _, nc := range socks {
		if netx.Answered(nc) || netx.AddrHeardSince(nc) {
			return loginAnswered
		}
	}
	return loginUnanswered
}

// isTimeout reports whether err is a deadline's: connect_timeout, or a
// context's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isServerError reports whether err carries a SQLSTATE: the server answered
// (53300 too many clients, 57P03 starting up, an authentication error...).
func isServerError(err error) bool {
	var coded interface{ SQLState() string }
	return err != nil && errors.As(err, &coded)
}
