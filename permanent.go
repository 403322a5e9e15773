package pgfast

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"syscall"
	"time"
)

// Errors that waiting cannot fix. When every host answered with one, Ready
// and Connect return it at once, and the background goroutine retries only
// every permanentBackoff (a fixed password or role is still picked up, and a
// fleet of pools does not trip account lockout).

// permanentError is a connection error waiting cannot fix, with the fix when
// known. It wraps the backend's error unchanged.
type permanentError struct {
	hint string
	err  error
}

func (e *permanentError) Error() string {
	if e.hint == "" {
		return e.err.Error()
	}
	return e.err.Error() + " (" + e.hint + ")"
}

func (e *permanentError) Unwrap() error { return e.err }

// permanent returns err as a *permanentError when waiting cannot fix it, else
// nil. refusedTLS is the backend's test for its TLS-refused error.
func permanent(err error, refusedTLS func(error) bool) *permanentError {
	if err == nil {
		return nil
	}
	if pe, ok := err.(*permanentError); ok {
		return pe
	}
	hint, ok := permanentHint(err, refusedTLS)
	if !ok {
		return nil
	}
	return &permanentError{hint: hint, err: err}
}

// permanentHint reports whether every attempt in err's tree failed for a
// permanent reason (one host that might come up makes it transient), and the
// fix for the last one.
func permanentHint(err error, refusedTLS func(error) bool) (string, bool) {
	if hint, ok := permanentNode(err, refusedTLS); ok {
		return hint, true
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		if len(errs) == 0 {
			return "", false
		}
		hint := ""
		for _, e := range errs {
			h, ok := permanentHint(e, refusedTLS)
			if !ok {
				return "", false
			}
			if h != "" {
				hint = h
			}
		}
		return hint, true
	case *beforeConnectError:
		// The application's hook failed: nothing about the server.
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			return permanentHint(inner, refusedTLS)
		}
	}
	return "", false
}

// permanentNode judges err itself, not what it wraps.
func permanentNode(err error, refusedTLS func(error) bool) (string, bool) {
	if refusedTLS != nil && refusedTLS(err) {
		return "the server does not support SSL: set sslmode=disable or prefer", true
	}
	switch e := err.(type) {
	case interface{ SQLState() string }:
		switch code := e.SQLState(); {
		case code == "28P01":
			return "check the password (DSN, PGPASSWORD or the password file)", true
		case strings.HasPrefix(code, "28"):
			return "check the user name and the server's pg_hba.conf", true
		case code == "3D000":
			return "check dbname: the database does not exist", true
		}
	case *tls.CertificateVerificationError:
		return certificateHint, true
	case x509.UnknownAuthorityError, *x509.UnknownAuthorityError:
		return "the server's certificate is signed by an unknown authority: check sslrootcert", true
	case x509.CertificateInvalidError, *x509.CertificateInvalidError:
		return certificateHint, true
	case x509.HostnameError, *x509.HostnameError:
		return "the server's certificate does not name this host: check host, or use sslmode=verify-ca", true
	case *os.SyscallError:
		// The kernel refuses the value itself (a limit lower than the
		// ones pgfast checks at parse time): every dial would fail alike.
		if strings.HasPrefix(e.Syscall, "setsockopt") && (errors.Is(e.Err, syscall.EINVAL) || errors.Is(e.Err, syscall.ENOPROTOOPT)) {
			return sockoptHint, true
		}
	}
	return "", false
}

const sockoptHint = "the kernel refused a socket option: check keepalives, keepalives_idle, keepalives_interval, keepalives_count and tcp_user_timeout"

const certificateHint = "the server's certificate failed verification: check it and sslrootcert"

// Retry pacing after a permanent error: the first retry after
// permanentFirstRetry, then every permanentBackoff (with up to a quarter more
// of jitter): at most three failed logins per pool in any minute.
const (
	permanentFirstRetry = 15 * time.Second
	permanentBackoff    = 30 * time.Second
)

func permanentRetry(n int, jitter func(time.Duration) time.Duration) time.Duration {
	d := permanentFirstRetry
	if n > 1 {
		d = permanentBackoff
	}
	return d + jitter(d/4)
}
