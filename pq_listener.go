package pgfast

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/pgfast/pgfast/internal/netx"
)

// LISTEN/NOTIFY with lib/pq's Listener, through pgfast (pgfast-pq).
//
// pq.NewListener dials on its own and sends the DSN as is: keys only pgfast
// understands reach the server as runtime parameters, which it refuses
// (42704), and Listen blocks. PQListenerDialer gives pq.NewDialListener a
// dialer that dials as pgfast does and the DSN without pgfast's keys.
// On pgx, use sql.Conn.Raw's *stdlib.Conn (Conn().WaitForNotification).

// PQListenerDialer returns, for pq.NewDialListener, a pq.Dialer using dsn's
// TCP settings and dsn without pgfast's keys. A bad DSN is a *ConfigError.
func PQListenerDialer(dsn string) (pq.Dialer, string, error) {
	_, cfg, err := parseDSN(LibPQ, dsn)
	if err != nil {
		return nil, "", err
	}
	clean, err := withoutPgfastKeys(dsn)
	if err != nil {
		return nil, "", err
	}
	return netx.NewDialer(cfg.dialSettings(), nil), clean, nil
}

// NewPQListener is pq.NewDialListener with PQListenerDialer's dialer and
// DSN: a lib/pq Listener whose connections pgfast dials.
func NewPQListener(dsn string, minReconnect, maxReconnect time.Duration, cb pq.EventCallbackType) (*pq.Listener, error) {
	d, clean, err := PQListenerDialer(dsn)
	if err != nil {
		return nil, err
	}
	return pq.NewDialListener(d, clean, minReconnect, maxReconnect, cb), nil
}

// isPgfastKey reports the keys pgfast consumes that raw lib/pq would send.
func isPgfastKey(k string) bool {
	if strings.HasPrefix(k, "pgfast_") {
		return true
	}
	for _, t := range libpqTCPKeys {
		if k == t {
			return true
		}
	}
	return false
}

// withoutPgfastKeys returns dsn without pgfast's keys, the rest as written.
func withoutPgfastKeys(dsn string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		base, query, ok := strings.Cut(dsn, "?")
		if !ok {
			return dsn, nil
		}
		frag := ""
		if i := strings.IndexByte(query, '#'); i >= 0 {
			query, frag = query[:i], query[i:]
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return "", &ConfigError{Reason: "bad URL query", Err: err}
		}
		for k := range vals {
			if isPgfastKey(k) {
				vals.Del(k)
			}
		}
		if len(vals) == 0 {
			return base + frag, nil
		}
		return base + "?" + vals.Encode() + frag, nil
	}
	pairs, err := splitKeyValues(dsn)
	if err != nil {
		return "", err
	}
	kept := pairs[:0]
	for _, p := range pairs {
		if !isPgfastKey(p.key) {
			kept = append(kept, p)
		}
	}
	texts := make([]string, len(kept))
	for i, p := range kept {
		texts[i] = p.text
	}
	return strings.Join(texts, " "), nil
}

type kvPair struct {
	key  string
	text string
}

var errBadKeyValue = errors.New("malformed key=value DSN")

// splitKeyValues splits a libpq key=value string into its settings: spaces
// around '=' are allowed, a value may be single-quoted with backslash escapes.
func splitKeyValues(s string) ([]kvPair, error) {
	var pairs []kvPair
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return pairs, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		skipSpace()
		if i >= len(s) || s[i] != '=' || key == "" {
			return nil, &ConfigError{Reason: "expected key=value", Err: errBadKeyValue}
		}
		i++ // '='
		skipSpace()
		if i < len(s) && s[i] == '\'' {
			i++
			for ; i < len(s) && s[i] != '\''; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			if i >= len(s) {
				return nil, &ConfigError{Key: key, Reason: "unterminated quoted value", Err: errBadKeyValue}
			}
			i++ // closing quote
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		if i > len(s) {
			i = len(s)
		}
		pairs = append(pairs, kvPair{key: key, text: s[start:i]})
	}
}
