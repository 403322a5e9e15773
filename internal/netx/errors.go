package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// canceledDialError reports that ctx ended the dial to address; it matches
// ctx.Err() (and the cancellation cause, if one was given) with errors.Is.
func canceledDialError(ctx context.Context, address string) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded // past the deadline, timer not yet fired
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("dial %s: %w: %w", address, err, cause)
	}
	return fmt.Errorf("dial %s: %w", address, err)
}

// DialError is returned when every address of a host failed. It names the
// host, the port and every address tried with the reason it failed.
type DialError struct {
	Host string
	Port string
	// Attempts lists every address tried, in order, with Status "failed" and
	// Err (e.g. a *net.OpError wrapping ECONNREFUSED, or a timeout).
	Attempts []AddrStats
}

var _ error = (*DialError)(nil)

// Error returns e.g.
// "dial db.example:5432: [::1]:5432: i/o timeout after 10s; 127.0.0.1:5432: connection refused".
func (e *DialError) Error() string {
	var b strings.Builder
	b.WriteString("dial ")
	b.WriteString(net.JoinHostPort(e.Host, e.Port))
	b.WriteString(": ")
	if len(e.Attempts) == 1 {
		// One address: Go's own text, the raw driver's, so greps keep working.
		if op, ok := e.Attempts[0].Err.(*net.OpError); ok && op.Op == "dial" && op.Addr != nil && op.Addr.String() == e.Attempts[0].Addr {
			return op.Error()
		}
		if e.Attempts[0].Addr == net.JoinHostPort(e.Host, e.Port) {
			b.WriteString(ConciseCause(e.Attempts[0].Err)) // the address is the host
			return b.String()
		}
	}
	for i, a := range e.Attempts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// Unwrap returns every attempt's cause, so errors.Is and errors.As see all.
func (e *DialError) Unwrap() []error {
	errs := make([]error, 0, len(e.Attempts))
	for _, a := range e.Attempts {
		if a.Err != nil {
			errs = append(errs, a.Err)
		}
	}
	return errs
}

// ConciseCause describes err without repeating the operation and address
// that the surrounding message already names.
func ConciseCause(err error) string {
	if err == nil {
		return "unknown error"
	}
	var timeout *attemptTimeoutError
	if errors.As(err, &timeout) {
		return timeout.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var sys *os.SyscallError
	if errors.As(err, &sys) && sys.Syscall == "connect" {
		err = sys.Err
	}
	return err.Error()
}

// attemptTimeoutError: one address missed ConnectTimeout. It matches
// os.ErrDeadlineExceeded and context.DeadlineExceeded and wraps the dial error.
type attemptTimeoutError struct {
	after time.Duration
	err   error
	// ioOnly: matches os.ErrDeadlineExceeded only (Login.PlainTimeouts).
	ioOnly bool
}

func (e *attemptTimeoutError) Error() string   { return "i/o timeout after " + e.after.String() }
func (e *attemptTimeoutError) Unwrap() error   { return e.err }
func (e *attemptTimeoutError) Timeout() bool   { return true }
func (e *attemptTimeoutError) Temporary() bool { return true }

func (e *attemptTimeoutError) Is(target error) bool {
	return target == os.ErrDeadlineExceeded || !e.ioOnly && target == context.DeadlineExceeded
}

// AddrStats is what pgfast knows of one server address: the one per-address
// type of the API (Stats.Addrs, NotReadyError.Addrs, DialError.Attempts).
type AddrStats struct {
	Addr string // ip:port or the socket path; the host when it could not be resolved
	Host string // the host name it was resolved from, if any
	// Status is "up", "pending" (an attempt in flight), "failed" (the
	// latest attempt failed) or "evicted" (pgfast shut its sockets down).
	Status string
	// Err is the latest failure, nil after a success (in a NotReadyError, an
	// attempt in flight says so).
	Err        error
	OpenConns  int       // sockets of the current generation (Stats only)
	Generation uint64    // bumped by every eviction (Stats only)
	Since      time.Time // when the status began (Stats only)
}

var _ fmt.Stringer = AddrStats{}

// String returns the address and its latest outcome, e.g.
// "127.0.0.1:5432: connection refused" or "127.0.0.1:5432: ok".
func (a AddrStats) String() string {
	if a.Err == nil {
		return a.Addr + ": ok"
	}
	return fmt.Sprintf("%s: %s", a.Addr, ConciseCause(a.Err))
}

// RoundDuration rounds d for a message without turning a short time into 0s.
func RoundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
