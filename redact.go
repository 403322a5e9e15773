package pgfast

// This file keeps the DSN's password out of errors.

import (
	"errors"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// secretFormsOf returns every spelling to scrub of every secret the DSN may
// carry, longest first.
func secretFormsOf(dsn string) []string { return secretsOfDSN(dsn).forms }

func redactAll(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "xxxxx")
		}
	}
	return s
}

// scrubError returns err, or a copy of its chain with secrets scrubbed when
// any error in it holds one in its message or a field (%q escapes what it
// quotes; pgconn.ParseConfigError's ConnString may hold the raw DSN).
// *url.Error, *strconv.NumError and url's string errors keep their type;
// others become a *scrubbedError wrapping their scrubbed causes.
func scrubError(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 || !holdsSecret(err, secrets) {
		return err
	}
	switch e := err.(type) {
	case *url.Error:
		return &url.Error{Op: e.Op, URL: redactAll(e.URL, secrets), Err: scrubError(e.Err, secrets)}
	case *strconv.NumError:
		return &strconv.NumError{Func: e.Func, Num: redactAll(e.Num, secrets), Err: scrubError(e.Err, secrets)}
	case url.EscapeError:
		return url.EscapeError(redactAll(string(e), secrets))
	case url.InvalidHostError:
		return url.InvalidHostError(redactAll(string(e), secrets))
	case *ConfigError:
		c := *e
		c.Key, c.Value, c.Reason = redactAll(c.Key, secrets), redactAll(c.Value, secrets), redactAll(c.Reason, secrets)
		c.Err = scrubError(c.Err, secrets)
		return &c
	}
	for _, k := range backendErrorKinds {
		if k.scrub == nil {
			continue
		}
		if se, ok := k.scrub(err, secrets, scrubError(errors.Unwrap(err), secrets)); ok {
			return se
		}
	}
	se := &scrubbedError{msg: redactAll(err.Error(), secrets)}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if c := u.Unwrap(); c != nil {
			se.errs = []error{scrubError(c, secrets)}
		}
	case interface{ Unwrap() []error }:
		for _, c := range u.Unwrap() {
			if c != nil {
				se.errs = append(se.errs, scrubError(c, secrets))
			}
		}
	}
	if len(se.errs) > 1 {
		return &scrubbedJoin{se}
	}
	return se
}

// backendErrorKinds teach the core the backends' error types, which it may
// not import: each adapter registers its own at init.
var backendErrorKinds []backendErrorKind

type backendErrorKind struct {
	// reason returns err's text without the DSN; ok is false for another type.
	reason func(err error) (reason string, ok bool)
	// scrub returns a same-type copy of err with secrets scrubbed from its
	// fields and cause as its cause; ok is false for another type.
	scrub func(err error, secrets []string, cause error) (scrubbed error, ok bool)
}

// holdsSecret reports whether err or an error it wraps holds a secret in its
// message or a string field.
func holdsSecret(err error, secrets []string) bool {
	if err == nil {
		return false
	}
	if redactAll(err.Error(), secrets) != err.Error() || valueHolds(reflect.ValueOf(err), secrets, 0) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return holdsSecret(u.Unwrap(), secrets)
	case interface{ Unwrap() []error }:
		for _, c := range u.Unwrap() {
			if holdsSecret(c, secrets) {
				return true
			}
		}
	}
	return false
}

// valueHolds reports whether v, or a string, byte slice, struct field,
// element or pointee within a few levels of it, contains one of secrets.
func valueHolds(v reflect.Value, secrets []string, depth int) bool {
	if depth > 5 || !v.IsValid() {
		return false
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && valueHolds(v.Elem(), secrets, depth+1)
	case reflect.String:
		return redactAll(v.String(), secrets) != v.String()
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if valueHolds(v.Field(i), secrets, depth+1) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			b := string(v.Bytes())
			return redactAll(b, secrets) != b
		}
		for i := 0; i < v.Len(); i++ {
			if valueHolds(v.Index(i), secrets, depth+1) {
				return true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if valueHolds(it.Key(), secrets, depth+1) || valueHolds(it.Value(), secrets, depth+1) {
				return true
			}
		}
	}
	return false
}

// scrubbedError stands for an error that held a secret: its message and
// causes scrubbed.
type scrubbedError struct {
	msg  string
	errs []error
}

func (e *scrubbedError) Error() string { return e.msg }

// Unwrap returns the scrubbed cause, if there is exactly one.
func (e *scrubbedError) Unwrap() error {
	if len(e.errs) == 1 {
		return e.errs[0]
	}
	return nil
}

// scrubbedJoin is a scrubbedError with several causes.
type scrubbedJoin struct{ e *scrubbedError }

func (j *scrubbedJoin) Error() string   { return j.e.msg }
func (j *scrubbedJoin) Unwrap() []error { return j.e.errs }

// passwordOf finds the DSN's password, best effort, only to scrub it.
func passwordOf(dsn string) string {
	pw, _ := passwordForms(dsn)
	return pw
}

// passwordForms returns the DSN's password and, for a URL, its
// percent-encoded form, best effort.
func passwordForms(dsn string) (pw, raw string) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		rest := dsn[strings.Index(dsn, "//")+2:]
		if at := strings.LastIndex(rest[:strings.IndexAny(rest+"/", "/?")], "@"); at >= 0 {
			if _, raw, ok := strings.Cut(rest[:at], ":"); ok {
				if dec, err := url.PathUnescape(raw); err == nil {
					return dec, raw
				}
				return raw, raw
			}
		}
		if m := urlQueryPasswordPattern.FindStringSubmatch(dsn); m != nil {
			raw = m[1]
			if dec, err := url.QueryUnescape(raw); err == nil {
				return dec, raw
			}
			return raw, raw
		}
		return "", ""
	}
	splitKV(dsn, isASCIISpace, func(k, v, r string) {
		if k == "password" {
			pw, raw = v, r
		}
	})
	return pw, raw
}

var urlQueryPasswordPattern = regexp.MustCompile(`[?&]password=([^&#]*)`)

// kvUnescape undoes libpq's backslash escapes in a key=value value.
func kvUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
