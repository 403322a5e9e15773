package pgfast

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrClosed is returned by Connect and Ready after the connector was closed.
var ErrClosed = errors.New("pgfast: connector closed")

// ErrNotReady is returned (wrapped in a *NotReadyError) when a connection is
// requested while the database is down, or when Ready's context ends first.
var ErrNotReady = errors.New("pgfast: database not ready")

// ConfigError reports a bad DSN. It never contains the password, nor does
// any error it wraps: a backend parse error that quoted it is replaced by a
// copy with the password scrubbed (a *url.Error or *strconv.NumError is
// rebuilt with its fields scrubbed; another error that quoted it becomes a
// plain error with the scrubbed message, wrapping its own scrubbed causes).
type ConfigError struct {
	Key    string // the offending key, when known
	Value  string // its value (empty for secrets)
	Reason string // what is wrong
	Err    error  // the underlying parse error, if any, scrubbed
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("pgfast: invalid DSN")
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
		if e.Value != "" {
			fmt.Fprintf(&b, "=%q", e.Value)
		}
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Unwrap returns the underlying parse error.
func (e *ConfigError) Unwrap() error { return e.Err }

// NotReadyError says why no connection could be had: the connector's state,
// the latest cause, and what each address last answered.
type NotReadyError struct {
	State State
	// Waited is how long the caller waited (zero for a fail-fast Connect).
	Waited time.Duration
	// Cause is the latest connection error, nil if no attempt finished yet.
	Cause error
	// Err is the caller's context error when the wait ended with it.
	Err error
	// Addrs describes each address tried with its latest outcome.
	Addrs []AddrStatus
}

func (e *NotReadyError) Error() string {
	var b strings.Builder
	b.WriteString("pgfast: database not ready (")
	b.WriteString(e.State.String())
	if e.Waited > 0 {
		fmt.Fprintf(&b, ", waited %s", e.Waited.Round(time.Millisecond))
	}
	b.WriteString(")")
	if len(e.Addrs) > 0 {
		b.WriteString(": ")
		for i, a := range e.Addrs {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(a.String())
		}
	}
	// The cause is worth repeating when the addresses do not already say it
	// (an authentication failure, a wrong role, ...).
	if e.Cause != nil && (len(e.Addrs) == 0 || len(dialErrorsIn(e.Cause)) == 0) {
		b.WriteString(": last error: ")
		b.WriteString(e.Cause.Error())
	}
	if len(e.Addrs) == 0 && e.Cause == nil {
		b.WriteString(": no connection attempt has finished yet")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotReady) true.
func (e *NotReadyError) Is(target error) bool { return target == ErrNotReady }

// Unwrap returns the latest cause and the context's error.
func (e *NotReadyError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Cause, e.Err} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// libpqKeys are the DSN keys a backend parse error may be about, longest
// first so that "sslmode" is not taken for "ssl".
var libpqKeys = []string{
	"target_session_attrs", "load_balance_hosts", "min_protocol_version", "max_protocol_version",
	"ssl_min_protocol_version", "ssl_max_protocol_version", "fallback_application_name",
	"application_name", "connect_timeout", "channel_binding", "client_encoding", "sslnegotiation",
	"sslcertmode", "sslrootcert", "sslpassword", "require_auth", "servicefile", "krbsrvname",
	"hostaddr", "passfile", "sslmode", "sslcert", "sslkey", "sslsni", "service", "dbname",
	"options", "port", "host", "user",
}

// configErrorFrom turns a backend parse error into a *ConfigError: the
// backend's reason without the DSN it quotes, the password scrubbed from the
// reason and from every error in the chain.
func configErrorFrom(dsn string, err error) *ConfigError {
	secrets := secretFormsOf(dsn)
	reason := err.Error()
	// pgx quotes the (redacted) DSN: "cannot parse `...`: reason".
	if i := strings.Index(reason, "`: "); i >= 0 && strings.HasPrefix(reason, "cannot parse `") {
		reason = reason[i+3:]
	}
	reason = redactAll(reason, secrets)
	ce := &ConfigError{Reason: reason, Err: scrubError(err, secrets)}
	for _, k := range libpqKeys {
		if containsWord(reason, k) {
			ce.Key = k
			break
		}
	}
	return ce
}

// containsWord reports whether s contains w not embedded in a longer name.
func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !isNameByte(s[start-1])) && (end == len(s) || !isNameByte(s[end])) {
			return true
		}
		i = end
	}
}

func isNameByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

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
