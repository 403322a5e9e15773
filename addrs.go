package pgfast

import (
	"fmt"
	"time"
)

// AddrStats is what pgfast knows of one server address. It is the one
// per-address type of the API: Stats.Addrs (every field), NotReadyError.Addrs
// (each address's latest outcome: Addr, Status, Err) and DialError.Attempts
// (every address one dial tried: Addr, Status "failed", Err) use it.
type AddrStats struct {
	Addr string // ip:port or the socket path; the host when it could not be resolved
	Host string // the host name it was resolved from, if any
	// Status is "up", "pending" (an attempt in flight), "failed" (the
	// latest attempt failed) or "evicted" (pgfast shut its sockets down).
	Status string
	// Err is the latest failure, nil after a success. In a NotReadyError an
	// attempt in flight is an error saying so (with what the address
	// answered before, if anything).
	Err        error
	OpenConns  int       // sockets of the current generation (Stats only)
	Generation uint64    // bumped by every eviction (Stats only)
	Since      time.Time // when the status began (Stats only)
}

// String returns the address and its latest outcome, e.g.
// "127.0.0.1:5432: connection refused" or "127.0.0.1:5432: ok".
func (a AddrStats) String() string {
	if a.Err == nil {
		return a.Addr + ": ok"
	}
	return fmt.Sprintf("%s: %s", a.Addr, conciseCause(a.Err))
}

// addrStatusesOf lists the addresses named by a connection error.
func addrStatusesOf(err error) []AddrStats {
	var out []AddrStats
	for _, de := range dialErrorsIn(err) {
		for _, at := range de.Attempts {
			out = append(out, AddrStats{Addr: at.Addr, Status: "failed", Err: at.Err})
		}
	}
	return out
}

// dialErrorsIn finds every *DialError in err's tree (a multi-host connect
// error joins one per host).
func dialErrorsIn(err error) []*DialError {
	if err == nil {
		return nil
	}
	if de, ok := err.(*DialError); ok {
		return []*DialError{de}
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		var out []*DialError
		for _, e := range u.Unwrap() {
			out = append(out, dialErrorsIn(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		return dialErrorsIn(u.Unwrap())
	}
	return nil
}
