package pgfast

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// connect_timeout is parsed by the backend, and both pgx and lib/pq multiply
// its seconds into a Duration unchecked: 18446744074 becomes 290 ms, 2^55+5
// becomes 5 s, lib/pq takes a negative value as "no timeout". libpq refuses
// anything but an int. pgfast finds the text the backend read (the DSN's or
// PGCONNECT_TIMEOUT) and holds it to libpq's range; a value from elsewhere
// (a service file) is checked from the Duration alone.

// maxConnectTimeout is libpq's largest connect_timeout (an int of seconds).
const maxConnectTimeout = math.MaxInt32 * time.Second

// checkConnectTimeout validates the backend's parsed connect_timeout d
// against its text. fresh: the backend parsed the DSN just now, so d is some
// whole number of seconds (not a Duration the application set).
func checkConnectTimeout(d time.Duration, dsn string, fresh bool) error {
	for _, v := range connectTimeoutTexts(dsn) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || backendSeconds(n) != d {
			continue // not the text the backend's value came from
		}
		switch {
		case n < 0:
			return &ConfigError{Key: "connect_timeout", Value: v, Reason: "must not be negative"}
		case n > math.MaxInt32:
			return &ConfigError{Key: "connect_timeout", Value: v, Reason: fmt.Sprintf(
				"must be at most %d seconds, as libpq (the driver's own parser would silently read it as %s)", math.MaxInt32, d)}
		}
		return nil
	}
	switch {
	case d < 0:
		return &ConfigError{Key: "connect_timeout", Value: d.String(), Reason: "must not be negative"}
	case d > maxConnectTimeout:
		return &ConfigError{Key: "connect_timeout", Value: d.String(), Reason: fmt.Sprintf("must be at most %d seconds, as libpq", math.MaxInt32)}
	case fresh && d%time.Second != 0:
		return &ConfigError{Key: "connect_timeout", Value: d.String(), Reason: fmt.Sprintf(
			"out of range: the driver's parser wrapped it around (at most %d seconds, as libpq)", math.MaxInt32)}
	}
	return nil
}

// backendSeconds is n seconds as pgx and lib/pq compute it: wrapping.
func backendSeconds(n int64) time.Duration {
	return time.Duration(n) * time.Second
}

// connectTimeoutTexts lists the texts connect_timeout may come from, the
// backend's preference first: the DSN's from the last, then PGCONNECT_TIMEOUT.
func connectTimeoutTexts(dsn string) []string {
	vals := dsnValues(dsn, "connect_timeout")
	for i, j := 0, len(vals)-1; i < j; i, j = i+1, j-1 {
		vals[i], vals[j] = vals[j], vals[i]
	}
	if v := os.Getenv("PGCONNECT_TIMEOUT"); v != "" {
		vals = append(vals, v)
	}
	return vals
}

// dsnValues returns every value given to key in dsn, in order, as libpq
// reads it. A finder, not a validator: a malformed DSN yields what it can.
func dsnValues(dsn, key string) []string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return urlValues(dsn, key)
	}
	return keywordValues(dsn, key)
}

func urlValues(dsn, key string) []string {
	_, query, ok := strings.Cut(dsn, "?")
	if !ok {
		return nil
	}
	var vals []string
	for _, pair := range strings.Split(query, "&") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		k, kerr := url.PathUnescape(k)
		v, verr := url.PathUnescape(v)
		if kerr == nil && verr == nil && k == key {
			vals = append(vals, v)
		}
	}
	return vals
}

// keywordValues reads a key/value string: keys end at '=', values are
// single-quoted or end at whitespace, a backslash escapes the next byte.
func keywordValues(s, key string) []string {
	const space = " \t\n\r\v\f"
	var vals []string
	s = strings.TrimLeft(s, space)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		k := strings.Trim(s[:eq], space)
		s = strings.TrimLeft(s[eq+1:], space)
		var raw string
		if strings.HasPrefix(s, "'") {
			end := 1
			for end < len(s) && s[end] != '\'' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				break // unterminated: the backend refused it
			}
			raw, s = s[1:end], s[end+1:]
		} else {
			end := 0
			for end < len(s) && !strings.ContainsRune(space, rune(s[end])) {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end, len(s))
			raw, s = s[:end], s[end:]
		}
		if k == key {
			vals = append(vals, unescapeBackslashes(raw))
		}
		s = strings.TrimLeft(s, space)
	}
	return vals
}

func unescapeBackslashes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
