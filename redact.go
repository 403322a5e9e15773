package pgfast

// This file keeps the DSN's password out of errors: the ways it may be
// spelled, and scrubbing it from messages and from whole error chains.

import (
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// redactSecret replaces every occurrence of secret in s.
func redactSecret(s, secret string) string {
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "xxxxx")
	if esc := url.QueryEscape(secret); esc != secret {
		s = strings.ReplaceAll(s, esc, "xxxxx")
	}
	return s
}

// secretFormsOf returns the ways the DSN's password may be spelled in a
// parse error, longest first: as written in the DSN, decoded, escaped for a
// URL's query or path, and quoted as %q quotes it.
func secretFormsOf(dsn string) []string {
	pw := passwordOf(dsn)
	if pw == "" {
		return nil
	}
	forms := []string{pw, url.QueryEscape(pw), url.PathEscape(pw), url.UserPassword("", pw).String()[1:]}
	if q := strconv.Quote(pw); len(q) > 2 {
		forms = append(forms, q[1:len(q)-1])
	}
	if q := strconv.QuoteToASCII(pw); len(q) > 2 {
		forms = append(forms, q[1:len(q)-1])
	}
	if raw := rawPasswordOf(dsn); raw != "" {
		forms = append(forms, raw)
	}
	slices.SortFunc(forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(forms)
}

// redactAll replaces every occurrence of each of secrets in s.
func redactAll(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "xxxxx")
		}
	}
	return s
}

// scrubError returns err, or a copy of its chain with secrets scrubbed when
// any error in it holds one, in its message or in a field (%q escapes what it
// quotes, and a field such as pgconn.ParseConfigError's ConnString may hold
// the DSN unredacted). *url.Error, *strconv.NumError and url's string errors
// are rebuilt with the same type; other errors that hold a secret become a
// *scrubbedError with the scrubbed message, wrapping their scrubbed causes.
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
		c.Value, c.Reason, c.Err = redactAll(c.Value, secrets), redactAll(c.Reason, secrets), scrubError(c.Err, secrets)
		return &c
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

// holdsSecret reports whether err or an error it wraps holds one of secrets
// in its message or in one of its string fields.
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

// scrubbedError stands for an error that held a secret (in its message or a
// field, or in an error it wraps): its message scrubbed, its causes scrubbed
// in turn.
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

var kvPasswordPattern = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// passwordOf finds the password in a DSN, best effort, only so that it can be
// scrubbed from error messages. Parsing proper is the backend's job.
func passwordOf(dsn string) string {
	pw, _ := passwordForms(dsn)
	return pw
}

// rawPasswordOf returns the password as written in a URL DSN (still
// percent-encoded), or "".
func rawPasswordOf(dsn string) string {
	_, raw := passwordForms(dsn)
	return raw
}

// passwordForms returns the DSN's password and, for a URL, the password as
// written (percent-encoded), best effort.
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
	m := kvPasswordPattern.FindStringSubmatch(dsn)
	if m == nil {
		return "", ""
	}
	raw = m[1]
	pw = raw
	if strings.HasPrefix(pw, "'") && strings.HasSuffix(pw, "'") && len(pw) >= 2 {
		pw = pw[1 : len(pw)-1]
	}
	return kvUnescape(pw), raw
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
