package pgfast

import "fmt"

// AddrStatus is what one server address last answered.
type AddrStatus struct {
	Addr string // ip:port, or the host when it could not be resolved
	Err  error  // nil: connected
}

func (a AddrStatus) String() string {
	if a.Err == nil {
		return a.Addr + ": ok"
	}
	return fmt.Sprintf("%s: %s", a.Addr, conciseCause(a.Err))
}

// addrStatusesOf lists the addresses named by a connection error.
func addrStatusesOf(err error) []AddrStatus {
	var out []AddrStatus
	for _, de := range dialErrorsIn(err) {
		for _, at := range de.Attempts {
			out = append(out, AddrStatus{Addr: at.Addr.String(), Err: at.Err})
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
