package pgfast

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// ErrClosed is returned by Connect and Ready after the connector was closed.
var ErrClosed = errors.New("pgfast: connector closed")

// ErrNotReady is returned (wrapped in a *NotReadyError) when a connection is
// requested while the database is down, or when Ready's context ends first.
var ErrNotReady = errors.New("pgfast: database not ready")

// ConfigError reports a bad DSN, or a bad configuration or option given to
// NewPoolWithConfig or NewConnectorFromConfig. Neither it nor any error it
// wraps contains the password: pgfast reads the DSN every way the backends
// and libpq may and scrubs every spelling of each password from the message
// and the chain. A backend error that held one is replaced by a scrubbed
// copy of the same type (*pgconn.ParseConfigError, *url.Error,
// *strconv.NumError) or a plain error. When parsers could disagree on where
// the password ends, nothing the backend said is kept: Reason is pgfast's
// own and Err is nil.
type ConfigError struct {
	Key    string // the offending key, when known
	Value  string // its value (empty for secrets)
	Reason string // what is wrong
	Err    error  // the underlying parse error, if any, scrubbed

	// in names what is invalid when it is not a DSN ("pgxpool config",
	// "*pgx.ConnConfig", "option"); empty for a DSN.
	in string
}

var _ error = (*ConfigError)(nil)

// Error returns "pgfast: invalid DSN: key=\"value\": reason" (or "invalid
// pgxpool config", "*pgx.ConnConfig", "option"), without the password.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("pgfast: invalid ")
	if e.in != "" {
		b.WriteString(e.in)
	} else {
		b.WriteString("DSN")
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
		if e.Value != "" {
			fmt.Fprintf(&b, "=%q", e.Value)
		}
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Unwrap returns the underlying parse error.
func (e *ConfigError) Unwrap() error { return e.Err }

// NotReadyError says why no connection could be had: the connector's state,
// the latest cause, and what each address last answered.
type NotReadyError struct {
	State State
	// Waited is how long the caller waited (zero for a fail-fast Connect).
	Waited time.Duration
	// Cause is the latest connection error, nil if no attempt finished yet.
	Cause error
	// Err is the caller's context error when the wait ended with it.
	Err error
	// Addrs describes each address tried with its latest outcome.
	Addrs []AddrStats

	attempts, failed int64         // connection attempts started, and failed, so far
	age              time.Duration // how long the connector has existed
}

var _ error = (*NotReadyError)(nil)

func (e *NotReadyError) Error() string {
	var b strings.Builder
	b.WriteString("pgfast: database not ready (")
	b.WriteString(e.State.String())
	if e.Waited > 0 {
		fmt.Fprintf(&b, ", waited %s", e.Waited.Round(time.Millisecond))
	}
	b.WriteString(")")
	if causeTellsAll(e.Cause, e.Addrs) {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
		return b.String()
	}
	if len(e.Addrs) > 0 {
		b.WriteString(": ")
		for i, a := range e.Addrs {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(a.String())
		}
	}
	// Repeat the cause when the addresses do not already say it (an
	// authentication failure, a wrong role, ...).
	if e.Cause != nil && (len(e.Addrs) == 0 || !onlyDialFailures(e.Cause)) {
		b.WriteString(": last error: ")
		b.WriteString(e.Cause.Error())
	}
	if len(e.Addrs) == 0 && e.Cause == nil {
		if e.attempts > 0 {
			fmt.Fprintf(&b, ": the first connection attempt is still in flight after %s", netx.RoundDuration(e.age))
		} else {
			b.WriteString(": no connection attempt started yet")
		}
	}
	return b.String()
}

// DialError is returned when every address of a host failed. Its fields are
// Host and Port, and Attempts: every address tried, in the order tried, each
// with Addr, Status "failed" and Err (the cause, e.g. a *net.OpError
// wrapping ECONNREFUSED, or a timeout). Its text is e.g. "dial
// db.example:5432: [::1]:5432: i/o timeout after 10s; 127.0.0.1:5432:
// connection refused"; Unwrap returns every attempt's cause.
type DialError = netx.DialError

// AddrStats is what pgfast knows of one server address, the one per-address
// type of the API (Stats.Addrs, NotReadyError.Addrs, DialError.Attempts).
//
// Fields: Addr is ip:port or the socket path (the host when it could not be
// resolved); Host the name it was resolved from, if any; Status "up",
// "pending" (an attempt in flight), "failed" (the latest attempt failed) or
// "evicted" (pgfast shut its sockets down); Err the latest failure, nil after
// a success (in a NotReadyError an attempt in flight is an error saying so,
// with what the address answered before, if anything). OpenConns (sockets of
// the current generation), Generation (bumped by every eviction) and Since
// (when the status began) are set in Stats only. String returns the address
// and its latest outcome, e.g. "127.0.0.1:5432: connection refused" or
// "127.0.0.1:5432: ok".
type AddrStats = netx.AddrStats

// describeProgress rewords the book's attempts in flight for a
// NotReadyError: what the address last answered, then that it is retried.
func describeProgress(addrs []AddrStats) []AddrStats {
	for i, a := range addrs {
		if pe, ok := a.Err.(*netx.PendingError); ok {
			addrs[i].Err = &inFlightError{since: pe.Since, last: pe.Last}
		}
	}
	return addrs
}

// inFlightError stands for an address whose latest attempt has not answered.
type inFlightError struct {
	since time.Duration
	last  error // what the address answered before, if anything
}

func (e *inFlightError) Error() string {
	flight := "attempt in flight for " + netx.RoundDuration(e.since).String()
	if e.since < time.Millisecond {
		flight = "attempt just started"
	}
	if e.last == nil {
		return flight
	}
	return netx.ConciseCause(e.last) + " (retrying: " + flight + ")"
}

// Is makes errors.Is(err, ErrNotReady) true, and matches the caller's
// context error and everything in Cause.
func (e *NotReadyError) Is(target error) bool {
	return target == ErrNotReady || (e.Cause != nil && (target == e.Cause || e.Err != nil && errors.Is(e.Err, target)))
}

// As reaches the caller's context error when there is a Cause too (Unwrap
// returns the Cause).
func (e *NotReadyError) As(target any) bool {
	return e.Cause != nil && e.Err != nil && errors.As(e.Err, target)
}

// Unwrap returns the latest connection error as the backend returned it
// (*pgconn.ConnectError, *pq.Error, ...); with no Cause, the context error.
// It leaves out pgfast's own texts, and when the raw error is one
// fmt.Errorf %w around another (lib/pq's "could not connect to any of the
// hosts"), returns what that wraps, as errors.Unwrap of the raw error would.
// errors.Is and errors.As see the Cause and context error whole.
func (e *NotReadyError) Unwrap() error {
	if e.Cause != nil {
		return unwrapText(e.Cause)
	}
	return e.Err
}

// libpqKeys are the DSN keys a backend parse error may be about, longest
// first so that "sslmode" is not taken for "ssl".
var libpqKeys = []string{
	"target_session_attrs", "load_balance_hosts", "min_protocol_version", "max_protocol_version",
	"ssl_min_protocol_version", "ssl_max_protocol_version", "fallback_application_name",
	"application_name", "connect_timeout", "channel_binding", "client_encoding", "sslnegotiation",
	"sslcertmode", "sslrootcert", "sslpassword", "require_auth", "servicefile", "krbsrvname",
	"hostaddr", "passfile", "sslmode", "sslcert", "sslkey", "sslsni", "service", "dbname",
	"options", "port", "host", "user",
}

// configErrorIn marks err, a *ConfigError about no other thing yet, as
// about what (ConfigError.in), and returns it.
func configErrorIn(err error, what string) error {
	if ce, ok := err.(*ConfigError); ok && ce.in == "" {
		ce.in = what
	}
	return err
}

// configErrorFrom turns a backend parse error into a *ConfigError with
// every secret behind the DSN scrubbed from the reason and the chain; the
// backend's error types stay, rebuilt with scrubbed fields. For an
// ambiguous DSN nothing the backend said is kept: any of it may quote a
// piece of the password.
func configErrorFrom(dsn string, err error) *ConfigError {
	s := secretsOfDSN(dsn)
	if s.ambiguous {
		return ambiguousDSNError(dsn)
	}
	reason := redactAll(backendReason(err), s.forms)
	ce := &ConfigError{Reason: reason, Err: scrubError(err, s.forms)}
	for _, k := range libpqKeys {
		if containsWord(reason, k) {
			ce.Key = k
			break
		}
	}
	return ce
}

// ambiguousDSNError is the *ConfigError for a DSN in which the password
// cannot be located for sure.
func ambiguousDSNError(dsn string) *ConfigError {
	if isURLDSN(dsn) {
		return &ConfigError{Reason: "where the URL's password ends is unclear (an '@' after the host, or several): " +
			"percent-encode '@', '/', '?', '#' and '%' in the password " +
			"(the parser's own message is left out: it may quote the password)"}
	}
	return &ConfigError{Reason: "the DSN does not split into key=value pairs (an unterminated quote, or a backslash at the end?) " +
		"(the parser's own message is left out: it may quote the password)"}
}

// backendReason returns a backend parse error's text without the DSN.
func backendReason(err error) string {
	for _, k := range backendErrorKinds {
		if k.reason == nil {
			continue
		}
		if r, ok := k.reason(err); ok {
			return r
		}
	}
	// net/url's error (lib/pq's URL parse) quotes the whole DSN.
	if ue, ok := err.(*url.Error); ok && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}

func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !isNameByte(s[start-1])) && (end == len(s) || !isNameByte(s[end])) {
			return true
		}
		i = end
	}
}

func isNameByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
