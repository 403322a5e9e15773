package main

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// tlsPlan is what the DSN's sslmode asks of the first host: TLS first or
// not, and whether the other way is tried next.
type tlsPlan struct {
	known    bool // the DSN parsed; false: nothing is claimed about sslmode
	first    bool // the first attempt uses TLS (prefer, require, verify-*)
	fallback bool // the other way is tried next (prefer, allow)
}

// tlsPlanOf reads the DSN's TLS plan the way pgx's parser does (the probe
// connects through pgconn). It does no I/O.
func tlsPlanOf(dsn string) tlsPlan {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return tlsPlan{}
	}
	p := tlsPlan{known: true, first: cfg.TLSConfig != nil}
	for _, fb := range cfg.Fallbacks {
		if fb.Host == cfg.Host && fb.Port == cfg.Port && (fb.TLSConfig != nil) != p.first {
			p.fallback = true
		}
	}
	return p
}

// failedTLSText describes TLS for an address whose startup or
// authentication failed and whose report says nothing about TLS: only what
// the DSN's sslmode makes certain is claimed.
func failedTLSText(p tlsPlan) string {
	switch {
	case !p.known:
		return "not known (the attempt failed before it was reported)"
	case !p.first && !p.fallback:
		return "none (not requested by sslmode)"
	case p.first && !p.fallback:
		return "required by sslmode; not known whether it was established before authentication failed"
	case p.first:
		return "not known: authentication failed; sslmode=prefer tries TLS first, then without"
	}
	return "not known: authentication failed; sslmode=allow tries without TLS first, then with"
}

// authOKText is the auth line of an address that authenticated in elapsed:
// what the time covers, naming TLS only when there was TLS.
func authOKText(tls, elapsed string) string {
	if strings.TrimSpace(tls) != "" {
		return "ok (connected, TLS, startup and auth in " + elapsed + ")"
	}
	return "ok (connected, startup and auth in " + elapsed + ")"
}
