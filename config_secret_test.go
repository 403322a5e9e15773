package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// chainErrors lists err and everything it wraps (single and multi unwrap),
// depth first.
func chainErrors(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, chainErrors(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, c := range u.Unwrap() {
			out = append(out, chainErrors(c)...)
		}
	}
	return out
}

// leaksSecret reports where in err's chain secret shows: in a message, in a
// field of a *url.Error or *strconv.NumError reached by errors.As, or in any
// string field of any error in the chain (read by reflection).
func leaksSecret(err error, secret string) string {
	for _, e := range chainErrors(err) {
		if strings.Contains(e.Error(), secret) {
			return fmt.Sprintf("%T message %q", e, e.Error())
		}
		if f := stringFieldWith(reflect.ValueOf(e), secret, 0); f != "" {
			return fmt.Sprintf("%T field %s", e, f)
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) && strings.Contains(ue.URL, secret) {
		return "errors.As *url.Error URL " + ue.URL
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) && strings.Contains(ne.Num, secret) {
		return "errors.As *strconv.NumError Num " + ne.Num
	}
	return ""
}

// stringFieldWith finds a string (possibly unexported) field of v that
// contains secret, following pointers and structs a few levels deep.
func stringFieldWith(v reflect.Value, secret string, depth int) string {
	if depth > 4 || !v.IsValid() {
		return ""
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return stringFieldWith(v.Elem(), secret, depth+1)
	case reflect.String:
		if strings.Contains(v.String(), secret) {
			return "string"
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := stringFieldWith(v.Field(i), secret, depth+1); f != "" {
				return v.Type().Field(i).Name + "." + f
			}
		}
	}
	return ""
}

// badDSNsWithSecret returns DSNs that both backends reject, with the
// password they carry.
func badDSNsWithSecret() map[string]string {
	return map[string]string{
		"postgres://u:SuperSecret9@localhost:abc/db":                             "SuperSecret9",
		"postgresql://u:Sup%40er%25Secret@localhost:abc/db":                      "Sup@er%Secret",
		"postgres://u:Su%70erSecretX@localhost:99999/db":                         "SuperSecretX",
		"postgres://u:p%zzSuperSecret@localhost/db":                              "SuperSecret",
		"postgres://u@localhost:abc/db?password=QuerySecret7":                    "QuerySecret7",
		"postgres://u@localhost:5432/db?password=QuerySecret8&connect_timeout=x": "QuerySecret8",
		"host=localhost port=abc user=u password=KvSecret11":                     "KvSecret11",
		"host=localhost user=u password='Kv Secret\\'12' port=abc":               "Kv Secret'12",
		"host=localhost user=u password=KvSecret13 connect_timeout=zz":           "KvSecret13",
		"host=localhost user=u password=KvSecret14 keepalives_idle=KvSecret14":   "KvSecret14",
		"postgres://u:pässwörd-Geheim@localhost:abc/db":                          "pässwörd-Geheim",
		"postgres://u:Quote\"Back\\Secret@localhost:abc/db":                      "Quote\"Back\\Secret",
	}
}

// TestConfigErrorChainHasNoPassword walks a rejected DSN's whole error chain
// (errors.Unwrap, multi-unwrap, errors.As into *url.Error and
// *strconv.NumError, every string field): the password is nowhere.
func TestConfigErrorChainHasNoPassword(t *testing.T) {
	for dsn, secret := range badDSNsWithSecret() {
		for _, b := range backends {
			_, _, err := parseDSN(b.backend, dsn)
			if err == nil {
				t.Errorf("%s: %q accepted", b.name, dsn)
				continue
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("%s: %q: %T is not a *ConfigError", b.name, dsn, err)
			}
			if where := leaksSecret(err, secret); where != "" {
				t.Errorf("%s: %q: the password shows in %s", b.name, dsn, where)
			}
		}
	}
}

// TestConfigErrorKeepsTypedCauses: a scrubbed chain still reaches the
// backend's url and strconv errors with errors.As, secrets scrubbed.
func TestConfigErrorKeepsTypedCauses(t *testing.T) {
	_, _, err := parseDSN(LibPQ, "postgres://u:SuperSecret9@localhost:abc/db")
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("lib/pq: no *url.Error in %v", err)
	}
	if !strings.Contains(ue.URL, "xxxxx") || ue.Op == "" {
		t.Errorf("url.Error %+v: want the URL with the password replaced", ue)
	}
	_, _, err = parseDSN(PGX, "host=localhost user=u password=KvSecret13 keepalives_idle=zz")
	var ne *strconv.NumError
	if !errors.As(err, &ne) || !errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("keepalives_idle=zz: want a *strconv.NumError (ErrSyntax) in %v", err)
	}
}

// FuzzConfigErrorChainHasNoPassword puts a fuzzed password into DSNs both
// backends reject, in URL and key=value form, and checks that it shows
// nowhere in the error's chain.
func FuzzConfigErrorChainHasNoPassword(f *testing.F) {
	for _, seed := range []string{"SuperSecret9", "p@ss:w/rd%41?", "'quoted\\ back'", "pässwörd €", "a b c d e f"} {
		f.Add(seed, uint8(0))
		f.Add(seed, uint8(3))
	}
	templates := []func(pw string) string{
		func(pw string) string {
			return "postgres://" + url.UserPassword("u", pw).String() + "@localhost:abc/db"
		},
		func(pw string) string {
			return "postgresql://u@localhost:abc/db?password=" + url.QueryEscape(pw)
		},
		func(pw string) string {
			return "postgres://" + url.UserPassword("u", pw).String() + "@localhost/db?connect_timeout=x&keepalives=y"
		},
		func(pw string) string {
			q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
			return "host=localhost user=u password='" + q + "' port=abc"
		},
		func(pw string) string {
			q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
			return "host=localhost user=u password='" + q + "' keepalives_idle=zz"
		},
	}
	f.Fuzz(func(t *testing.T, pw string, which uint8) {
		if len(pw) < 8 || strings.ContainsAny(pw, "\x00") {
			return
		}
		mk := templates[int(which)%len(templates)]
		dsn := mk(pw)
		if strings.Contains(mk("\x01"), pw) || passwordOf(dsn) != pw {
			return // the password is part of the DSN's other text, or not one the DSN can carry
		}
		for _, b := range backends {
			_, _, err := parseDSN(b.backend, dsn)
			if err == nil {
				continue
			}
			if where := leaksSecret(err, pw); where != "" {
				t.Fatalf("%s: %q: the password shows in %s", b.name, dsn, where)
			}
		}
	})
}

// FuzzParseDSNErrorChain: for any DSN both backends reject whose password
// (8+ bytes) is written once, the password shows nowhere in the error chain.
func FuzzParseDSNErrorChain(f *testing.F) {
	for dsn := range badDSNsWithSecret() {
		f.Add(dsn)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		pw, raw := passwordForms(dsn)
		if len(pw) < 8 || strings.Count(dsn, raw) != 1 || strings.Count(dsn, pw) > 1 || strings.Count(dsn, "password") != 1 {
			return
		}
		for _, b := range backends {
			if _, _, err := parseDSN(b.backend, dsn); err != nil {
				if where := leaksSecret(err, pw); where != "" {
					t.Fatalf("%s: %q: the password shows in %s", b.name, dsn, where)
				}
			}
		}
	})
}

// issue17SecretDSNs are the DSNs of issue 17 (item 2), each with the part of
// the password the review saw leak: an unencoded '/', '?' or '@' in a URL's
// password, and the quoted and backslash-escaped key=value forms pgx's own
// redaction gets half right.
var issue17SecretDSNs = []struct {
	dsn, secret string
	// key is the *ConfigError's Key on both backends ("" = not checked).
	notKey string
}{
	{"postgres://u:pass?S3cretMark@h/db?sslmode=bogus", "S3cretMark", "sslmode"},
	{"postgres://u:pa/S3cretMark@h/db?sslmode=bogus", "S3cretMark", "sslmode"},
	{"postgres://u:p@S3cretMark@h/db?sslmode=bogus", "S3cretMark", ""},
	{"postgres://u:p@S3cretMark@h:abc/db", "S3cretMark", ""},
	{`host=h user=u password='it\'s S3cretMark' sslmode=bogus`, "S3cretMark", ""},
	{`host=h user=u password=a\ S3cretMark sslmode=bogus`, "S3cretMark", ""},
	{`host=h user=u password=a\ S3cretMark port=abc`, "S3cretMark", ""},
	{"postgres://u:pa#S3cretMark@h/db?sslmode=bogus", "S3cretMark", ""},
}

// TestIssue17PasswordNotInConfigError: through every public entry point that
// parses a DSN (sql.Open on both drivers, NewConnector with both backends,
// NewPool), none of issue 17's DSNs shows any part of its password anywhere
// in the error's chain, pgconn.ParseConfigError's ConnString included, and a
// URL whose password holds an unencoded '?' or '/' is not reported as a bad
// sslmode.
func TestIssue17PasswordNotInConfigError(t *testing.T) {
	for _, c := range issue17SecretDSNs {
		entries := map[string]func() error{
			"sql.Open pgfast": func() error {
				db, err := sql.Open("pgfast", c.dsn)
				if err == nil {
					db.Close()
				}
				return err
			},
			"sql.Open pgfast-pq": func() error {
				db, err := sql.Open("pgfast-pq", c.dsn)
				if err == nil {
					db.Close()
				}
				return err
			},
			"NewConnector pgx": func() error {
				cn, err := NewConnector(c.dsn)
				if err == nil {
					cn.Close()
				}
				return err
			},
			"NewConnector lib/pq": func() error {
				cn, err := NewConnector(c.dsn, WithBackend(LibPQ))
				if err == nil {
					cn.Close()
				}
				return err
			},
			"NewPool": func() error {
				p, err := NewPool(context.Background(), c.dsn)
				if err == nil {
					p.Close()
				}
				return err
			},
		}
		for name, call := range entries {
			err := call()
			if err == nil {
				t.Errorf("%s(%q): accepted", name, c.dsn)
				continue
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("%s(%q): %T is not a *ConfigError", name, c.dsn, err)
				continue
			}
			if where := leaksSecret(err, c.secret); where != "" {
				t.Errorf("%s(%q): the password shows in %s", name, c.dsn, where)
			}
			if c.notKey != "" && ce.Key == c.notKey {
				t.Errorf("%s(%q): Key %q: the password's unencoded character is the fault, not %s (%v)", name, c.dsn, ce.Key, c.notKey, err)
			}
		}
	}
}

// TestParseConfigErrorKeptScrubbed: pgx's *pgconn.ParseConfigError stays
// reachable with errors.As, its ConnString the DSN with the password
// replaced (pgx leaves it whole); where the password's extent is ambiguous
// the backend's error is dropped and the reason is pgfast's own.
func TestParseConfigErrorKeptScrubbed(t *testing.T) {
	for dsn, wantConn := range map[string]string{
		`host=h user=u password='it\'s S3cretMark' sslmode=bogus`: `host=h user=u password=xxxxx sslmode=bogus`,
		`host=h user=u password=a\ S3cretMark port=abc`:           `host=h user=u password=xxxxx port=abc`,
		"postgres://u:S3cret%2FMark@h/db?sslmode=bogus":           "postgres://u:xxxxx@h/db?sslmode=bogus",
	} {
		_, _, err := parseDSN(PGX, dsn)
		var pe *pgconn.ParseConfigError
		if !errors.As(err, &pe) {
			t.Errorf("%q: %v: no *pgconn.ParseConfigError", dsn, err)
			continue
		}
		if pe.ConnString != wantConn {
			t.Errorf("%q: ConnString %q, want %q", dsn, pe.ConnString, wantConn)
		}
	}
	_, _, err := parseDSN(PGX, "postgres://u:pass?S3cretMark@h/db?sslmode=bogus")
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Err != nil || !strings.Contains(ce.Reason, "percent-encode") {
		t.Errorf("ambiguous URL: %#v, want pgfast's own reason and no backend error", err)
	}
}
