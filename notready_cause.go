package pgfast

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/pgfast/pgfast/internal/netx"
)

// causeTellsAll reports whether a NotReadyError's message can be the
// backend's text alone (a cause, nothing in flight, every address named in
// it), so a log grep written for the raw driver keeps matching.
func causeTellsAll(cause error, addrs []AddrStats) bool {
	if cause == nil {
		return false
	}
	text := cause.Error()
	for _, a := range addrs {
		switch a.Err.(type) {
		case *inFlightError, *netx.PendingError:
			return false
		}
		if !strings.Contains(text, a.Addr) {
			return false
		}
	}
	return true
}

// onlyDialFailures reports whether every failure in err's tree is inside a
// *DialError: the per-address list then says all there is.
func onlyDialFailures(err error) bool {
	switch u := err.(type) {
	case nil:
		return false
	case *DialError:
		return true
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		for _, e := range errs {
			if !onlyDialFailures(e) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		return onlyDialFailures(u.Unwrap())
	}
	return false
}

// textWrapper is the type of fmt.Errorf's error with a single %w.
var textWrapper = reflect.TypeOf(fmt.Errorf("%w", errors.New("")))

// unwrapText returns the raw driver's error inside err, as NotReadyError's
// Unwrap describes.
func unwrapText(err error) error {
	for {
		switch e := err.(type) {
		case *permanentError:
			err = e.err
			continue
		case *pgxConnectError:
			err = e.err
			continue
		}
		break
	}
	if reflect.TypeOf(err) == textWrapper {
		if inner := errors.Unwrap(err); inner != nil {
			return inner
		}
	}
	return err
}

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
