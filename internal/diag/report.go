package diag

import (
	"net"
	"strconv"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// DSNInfo says what a DSN means to pgfast and to the raw backend driver.
// It holds no password.
type DSNInfo struct {
	// Backend is the driver whose parser read the DSN (a pgfast.Backend).
	Backend any
	// Config is pgfast's effective settings, defaults applied (a pgfast.Config).
	Config any
	// User and Database are the role and database the DSN connects as and to.
	User, Database string
	// RawConnectTimeout is connect_timeout as the raw driver reads it: 0 when
	// unset or 0, which the raw drivers take as "no limit".
	RawConnectTimeout time.Duration
	// Forwarded holds the libpq TCP keys of the DSN (keepalives*,
	// tcp_user_timeout). The raw drivers do not understand them and send them
	// to the server as runtime parameters; pgfast consumes them instead.
	Forwarded map[string]string
	// Platform is what pgfast applies on the operating system it runs on.
	Platform Platform
}

// Platform is what pgfast applies to its connections on one operating system.
type Platform struct {
	GOOS string
	// Peek: the checkout peeks at the socket (MSG_PEEK) instead of pgx's
	// ping after a second idle; false: pgx's and pgxpool's ping stays on.
	Peek bool
	// KeepaliveTimings: keepalives_idle, _interval and _count are applied
	// per socket; false: the system-wide values apply.
	KeepaliveTimings bool
	// UserTimeoutOption is the socket option tcp_user_timeout sets
	// (TCP_USER_TIMEOUT, TCP_RXT_CONNDROPTIME, TCP_MAXRTMS), "" if none.
	UserTimeoutOption string
	// DeadPeerWatch: pgfast's dead-peer watcher runs (TCP_INFO, Linux).
	DeadPeerWatch bool
	// NotApplied lists the keys this system cannot apply that the DSN (or
	// pgfast's defaults) set.
	NotApplied []string
}

// Stage is what Probe is doing.
type Stage string

// The stages of Probe, in order.
const (
	Resolving Stage = "resolving"          // looking up a host's addresses
	Dialing   Stage = "dialing"            // TCP (or Unix socket) connect
	Startup   Stage = "TLS, startup, auth" // after connect, until authenticated
	Querying  Stage = "querying"           // asking the server for its role
	AddrDone  Stage = "done"               // an address is finished; Event.Result says how
)

// Event reports progress of Probe.
type Event struct {
	Stage Stage
	Host  string    // the DSN's host:port (or socket directory and port)
	Addr  string    // the address being probed; empty while resolving
	At    time.Time // when the stage began
	// Result is the address's outcome, with AddrDone only.
	Result *AddrReport
}

// Report is what Probe found out about every server of a DSN. It holds no
// password, and no error in it quotes one.
type Report struct {
	// User and Database are the role and database the DSN connects as and to.
	User, Database string
	// Config is pgfast's effective settings, defaults applied (a pgfast.Config).
	Config any
	// Hosts lists the DSN's hosts in order, each with its addresses.
	Hosts []HostReport
	// Pick is the address target_session_attrs would choose (in the DSN's
	// host order; load_balance_hosts=random would shuffle the hosts), nil if
	// none qualifies.
	Pick *Pick
	// Elapsed is how long the whole probe took.
	Elapsed time.Duration
}

// Usable reports whether a server was found that the DSN's
// target_session_attrs accepts.
func (r *Report) Usable() bool { return r.Picked() != nil }

// Picked returns the address target_session_attrs would choose, or nil.
func (r *Report) Picked() *AddrReport {
	if r.Pick == nil {
		return nil
	}
	return &r.Hosts[r.Pick.Host].Addrs[r.Pick.Addr]
}

// Pick locates an address in a Report.
type Pick struct {
	Host int // index into Report.Hosts
	Addr int // index into that host's Addrs
}

// HostReport is one host of the DSN with the outcome of each of its addresses.
type HostReport struct {
	Host     string // as in the DSN: a name, an IP address, or a socket directory
	Port     uint16
	HostAddr string // the hostaddr given for it, if any
	// ResolveErr says why the host's addresses could not be looked up.
	ResolveErr error
	// Addrs lists the host's addresses in the order pgfast's dialer tries
	// them (families interleaved), each probed on its own.
	Addrs []AddrReport
}

// String returns host:port, or the socket directory and port.
func (h HostReport) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(int(h.Port))) }

// DialOutcome is how connecting to one address ended.
type DialOutcome string

// Dial outcomes.
const (
	DialConnected   DialOutcome = "connected"
	DialRefused     DialOutcome = "refused"     // RST: nothing listens there
	DialTimedOut    DialOutcome = "timed out"   // no answer within connect_timeout, or the kernel gave up
	DialUnreachable DialOutcome = "unreachable" // no route to the host or network
	DialCancelled   DialOutcome = "cancelled"   // the caller's context ended
	DialFailed      DialOutcome = "failed"      // anything else, see DialErr
)

// AddrReport is the outcome of probing one address.
type AddrReport struct {
	Network string // "tcp" or "unix"
	Addr    string // "127.0.0.1:5432", "[::1]:5432", or the socket path

	Dial     DialOutcome
	DialTime time.Duration // how long connect() took, success or not
	DialErr  error

	// TLS names the protocol version and cipher suite; empty when the
	// connection is not encrypted.
	TLS string
	// TLSFallback is set when a TLS attempt failed and the driver went on
	// without TLS (sslmode=prefer).
	TLSFallback bool
	// TLSErr says why TLS failed when that ended the attempt.
	TLSErr error

	// Authenticated is set when startup and authentication succeeded.
	Authenticated bool
	// StartupErr says why the server did not accept the session (for
	// example *pgconn.PgError 28P01, a wrong password) or why the connection
	// broke during startup.
	StartupErr error

	ServerVersion string // server_version as the server reports it
	// RoleKnown is set when Standby and ReadOnly could be found out.
	RoleKnown bool
	Standby   bool // in hot standby (in_hot_standby, or pg_is_in_recovery())
	ReadOnly  bool // default_transaction_read_only is on
	RoleErr   error

	// Socket holds the TCP options read back from the socket; nil for Unix
	// sockets or when they could not be read (SocketErr).
	Socket    *SocketOptions
	SocketErr error

	Elapsed time.Duration // the whole attempt
}

// Role returns "primary", "standby", or "" when unknown.
func (a *AddrReport) Role() string {
	switch {
	case !a.RoleKnown:
		return ""
	case a.Standby:
		return "standby"
	}
	return "primary"
}

// Err returns the error that ended the attempt, nil if it succeeded.
func (a *AddrReport) Err() error {
	for _, err := range []error{a.DialErr, a.TLSErr, a.StartupErr} {
		if err != nil {
			return err
		}
	}
	return nil
}

// SocketOptions are the TCP options read back from a socket with getsockopt.
type SocketOptions = netx.SocketOptions
