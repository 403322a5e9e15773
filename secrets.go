package pgfast

// This file finds the secrets a DSN may carry, so that they can be scrubbed
// from everything pgfast exposes. It does not trust any one parser's reading
// of a DSN: it reads it every way pgx, lib/pq and libpq may, and where they
// could disagree on where the password starts and ends, it says so
// (dsnSecrets.ambiguous) so that no text of the DSN is repeated at all.

import (
	"bufio"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// dsnSecrets is what pgfast can tell of the secrets behind a DSN.
type dsnSecrets struct {
	// forms are the spellings to scrub, longest first: each password the
	// DSN, the environment (PGPASSWORD), a service file or a password file
	// may hold, raw, decoded, percent-encoded, quoted and escaped.
	forms []string
	// ambiguous is set when the DSN holds a password whose extent parsers
	// may read differently: a URL whose user information has an unencoded
	// '@', '/', '?' or '#', or key=value text that does not split into
	// pairs. forms then include every piece of text the password may span,
	// and a backend's parse error is not repeated (configErrorFrom).
	ambiguous bool
}

// secretsOfDSN reads dsn's secrets (see dsnSecrets).
func secretsOfDSN(dsn string) dsnSecrets {
	var (
		pws      []string
		settings map[string][]string
		amb      bool
	)
	if isURLDSN(dsn) {
		pws, settings, amb = urlSecrets(dsn)
	} else {
		pws, settings, amb = kvSecrets(dsn)
	}
	pws = append(pws, outsideSecrets(settings)...)
	return dsnSecrets{forms: spellingsOf(pws), ambiguous: amb}
}

// withPassword adds the spellings of pw, the password the backend parsed
// (from the DSN, the environment or a file), to forms.
func withPassword(forms []string, pw string) []string {
	if pw == "" {
		return forms
	}
	return longestFirst(append(slices.Clone(forms), spellingsOf([]string{pw})...))
}

// isURLDSN reports whether dsn is a URL, as both backends tell.
func isURLDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// urlSecrets returns the passwords a URL DSN may hold, in every reading:
// net/url's (lib/pq: the last '@' before the first '/', '?' or '#'), libpq's
// and pgx's (the first '@' before a '/'), a password whose unencoded '/',
// '?' or '#' strands its '@' further on, and the query's password and
// sslpassword. It also returns the query's settings (for servicefile and
// passfile) and whether the readings may disagree.
func urlSecrets(dsn string) (pws []string, settings map[string][]string, ambiguous bool) {
	rest := dsn[strings.Index(dsn, "//")+2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	// Any '@' after a ':' may end the password in some reading: only one,
	// within the authority, is certain (an '@' in a query value, even
	// after a clean user:password@host, counts: the readings differ on
	// where the authority ends when the password holds '/', '?' or '#').
	if colon := strings.IndexByte(rest, ':'); colon >= 0 {
		ats := 0
		for i := colon + 1; i < len(rest); i++ {
			if rest[i] != '@' {
				continue
			}
			raw := rest[colon+1 : i]
			pws = append(pws, raw, lenientUnescape(raw))
			if ats++; ats > 1 || i >= end {
				ambiguous = true
			}
		}
	}
	settings = map[string][]string{}
	for i := 0; i < len(rest); i++ {
		if rest[i] != '?' {
			continue
		}
		// A query password's unencoded '&' ends it early: what follows
		// may be the rest of it, read as other pairs. Each such run is a
		// candidate; a pair after the password that is no setting (no '=',
		// or a key nobody knows) makes the DSN ambiguous.
		var tail []string
		for _, pair := range strings.Split(rest[i+1:], "&") {
			k, v, ok := strings.Cut(pair, "=")
			k = lenientUnescape(strings.TrimSpace(k))
			if tail != nil {
				tail = append(tail, pair)
				run := strings.Join(tail, "&")
				pws = append(pws, run, lenientUnescape(run))
				if !ok && pair != "" || ok && !isKnownKey(k) {
					ambiguous = true
				}
			}
			if !ok {
				continue
			}
			dec := lenientUnescape(v)
			settings[k] = append(settings[k], dec)
			if isPasswordKey(k) {
				tail = []string{v}
				pws = append(pws, v, dec, lenientUnescape(strings.ReplaceAll(v, "+", " ")))
				if h, _, ok := strings.Cut(v, "#"); ok {
					pws = append(pws, h, lenientUnescape(h))
				}
			}
		}
	}
	if ambiguous {
		pws = append(pws, piecesOf(pws, "/?#@:&=")...)
	}
	return pws, settings, ambiguous
}

// isKnownKey reports whether k is a setting pgfast, a backend or pgxpool
// knows by name (a runtime parameter of the server's may be any name).
func isKnownKey(k string) bool {
	return isPasswordKey(k) || slices.Contains(libpqKeys, k) || slices.Contains(libpqTCPKeys, k) ||
		strings.HasPrefix(k, "pgfast_") || strings.HasPrefix(k, "pool_") ||
		slices.Contains([]string{"database", "ssl", "sslinline", "sslcrl", "gssencmode", "replication", "search_path", "timezone", "datestyle"}, k)
}

// isPasswordKey reports whether a DSN key names a secret.
func isPasswordKey(k string) bool { return k == "password" || k == "sslpassword" }

// lenientUnescape decodes the valid %XX escapes of s and keeps the rest as
// written, as pgx reads a URL's keys.
func lenientUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kvSecrets returns the password and sslpassword values of a key=value DSN
// as pgx splits it (ASCII spaces) and as lib/pq does (Unicode spaces), each
// decoded and as written, the DSN's settings, and whether either split
// failed on a DSN that names a password (then every piece of text after
// "password" is returned too).
func kvSecrets(dsn string) (pws []string, settings map[string][]string, ambiguous bool) {
	settings = map[string][]string{}
	for _, isSpace := range []func(rune) bool{isASCIISpace, unicode.IsSpace} {
		ok := splitKV(dsn, isSpace, func(k, v, raw string) {
			settings[k] = append(settings[k], v)
			if isPasswordKey(k) {
				pws = append(pws, v, raw, strings.TrimSuffix(strings.TrimPrefix(raw, "'"), "'"))
			}
		})
		if !ok && strings.Contains(dsn, "password") {
			ambiguous = true
		}
	}
	if ambiguous {
		for i := 0; ; {
			j := strings.Index(dsn[i:], "password")
			if j < 0 {
				break
			}
			i += j + len("password")
			tail := strings.TrimLeft(dsn[i:], " \t\n\r\v\f=")
			pws = append(pws, tail, kvUnescape(tail))
		}
		pws = append(pws, piecesOf(pws, " \t\n\r\v\f'\\=")...)
	}
	return pws, settings, ambiguous
}

func isASCIISpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// splitKV splits a key=value DSN as libpq does (quoted values, backslash
// escapes), calling set with each key, its value and the value as written.
// It reports false where the text does not split.
func splitKV(s string, isSpace func(rune) bool, set func(k, v, raw string)) bool {
	i := 0
	skip := func() {
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if !isSpace(r) {
				return
			}
			i += n
		}
	}
	for {
		skip()
		if i == len(s) {
			return true
		}
		k0 := i
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if isSpace(r) || r == '=' {
				break
			}
			i += n
		}
		key := s[k0:i]
		skip()
		if i == len(s) || s[i] != '=' || key == "" {
			return false
		}
		i++
		skip()
		v0 := i
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for {
				if i == len(s) {
					return false
				}
				c := s[i]
				if c == '\'' {
					i++
					break
				}
				if c == '\\' {
					i++
					if i == len(s) {
						return false
					}
				}
				_, n := utf8.DecodeRuneInString(s[i:])
				val.WriteString(s[i : i+n])
				i += n
			}
		} else {
			for i < len(s) {
				r, n := utf8.DecodeRuneInString(s[i:])
				if isSpace(r) {
					break
				}
				if r == '\\' {
					i++
					if i == len(s) {
						return false
					}
					_, n = utf8.DecodeRuneInString(s[i:])
				}
				val.WriteString(s[i : i+n])
				i += n
			}
		}
		set(key, val.String(), s[v0:i])
	}
}

// piecesOf returns the pieces of 4 bytes or more that seps cut each of pws
// into: what an error may quote of a password some parser split elsewhere.
func piecesOf(pws []string, seps string) []string {
	var out []string
	for _, pw := range pws {
		for _, p := range strings.FieldsFunc(pw, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
			if len(p) >= 4 && p != pw {
				out = append(out, p)
			}
		}
	}
	return out
}

// maxSecretFile bounds what is read of a service or password file.
const maxSecretFile = 1 << 20

// outsideSecrets returns the passwords the backends may take from outside
// the DSN: PGPASSWORD, the service file's entries when a service is named,
// and the password file's.
func outsideSecrets(settings map[string][]string) []string {
	pws := []string{os.Getenv("PGPASSWORD")}
	home, _ := os.UserHomeDir()
	if home == "" { // lib/pq falls back to the account's home directory
		if u, err := user.Current(); err == nil {
			home = u.HomeDir
		}
	}
	if len(settings["service"]) > 0 || os.Getenv("PGSERVICE") != "" {
		files := append(slices.Clone(settings["servicefile"]), os.Getenv("PGSERVICEFILE"))
		if home != "" {
			files = append(files, filepath.Join(home, ".pg_service.conf"))
		}
		if d := os.Getenv("PGSYSCONFDIR"); d != "" {
			files = append(files, filepath.Join(d, "pg_service.conf"))
		}
		for _, f := range files {
			pws = append(pws, serviceFileSecrets(f)...)
		}
	}
	files := append(slices.Clone(settings["passfile"]), os.Getenv("PGPASSFILE"))
	if home != "" {
		files = append(files, filepath.Join(home, ".pgpass"))
	}
	if d := os.Getenv("APPDATA"); d != "" { // Windows: where libpq and lib/pq look
		files = append(files, filepath.Join(d, "postgresql", "pgpass.conf"))
	}
	for _, f := range files {
		pws = append(pws, passFileSecrets(f)...)
	}
	return pws
}

// readLines returns the lines of a small file, nil when it cannot be read.
func readLines(path string) []string {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(f, maxSecretFile))
	sc.Buffer(make([]byte, 0, 4096), maxSecretFile)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// serviceFileSecrets returns a service file's password values, and every
// line that is not key=value (a parser's error may quote it whole).
func serviceFileSecrets(path string) []string {
	var pws []string
	for _, line := range readLines(path) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		switch {
		case !ok:
			pws = append(pws, line)
		case isPasswordKey(strings.TrimSpace(k)):
			pws = append(pws, strings.TrimSpace(v), v)
		}
	}
	return pws
}

// passFileSecrets returns the password field of each line of a password
// file (host:port:db:user:password, '\' escaping ':' and '\').
func passFileSecrets(path string) []string {
	var pws []string
	for _, line := range readLines(path) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		fields, start := 0, 0
		for i := 0; i < len(line) && fields < 4; i++ {
			switch line[i] {
			case '\\':
				i++
			case ':':
				fields++
				start = i + 1
			}
		}
		if fields == 4 {
			raw := line[start:]
			pws = append(pws, raw, kvUnescape(raw))
		}
	}
	return pws
}

// spellingsOf returns the ways each of pws may be written in a message or
// field, longest first: as is, escaped for a URL's query, path or user
// information, quoted as %q and JSON quote, and escaped for a key=value DSN.
func spellingsOf(pws []string) []string {
	kvEscape := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	inner := func(q string) string { return q[1 : len(q)-1] }
	var forms []string
	for _, pw := range pws {
		if pw == "" {
			continue
		}
		kv := kvEscape.Replace(pw)
		forms = append(forms, pw, url.QueryEscape(pw), url.PathEscape(pw), url.UserPassword("", pw).String()[1:],
			inner(strconv.Quote(pw)), inner(strconv.QuoteToASCII(pw)), kv, inner(strconv.Quote(kv)))
		if j, err := json.Marshal(pw); err == nil {
			forms = append(forms, inner(string(j)))
		}
	}
	return longestFirst(forms)
}

// longestFirst sorts forms longest first (so that a form is scrubbed before
// a shorter one within it) and drops duplicates.
func longestFirst(forms []string) []string {
	slices.SortFunc(forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(forms)
}
