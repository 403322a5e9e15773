package pgfast

// This file finds the secrets a DSN may carry, to scrub them from everything
// pgfast exposes. It reads the DSN every way pgx, lib/pq and libpq may, and
// where they could disagree on the password's extent says so (ambiguous).

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
	// forms are the spellings to scrub, longest first: each password from
	// the DSN, PGPASSWORD, a service or password file, in every encoding.
	forms []string
	// ambiguous: parsers may read the password's extent differently (an
	// unencoded '@', '/', '?' or '#' in a URL's user information, key=value
	// text that does not split). forms then hold every piece it may span,
	// and a backend's parse error is not repeated.
	ambiguous bool
}

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

// withPassword adds the spellings of pw, the password the backend parsed.
func withPassword(forms []string, pw string) []string {
	if pw == "" {
		return forms
	}
	return longestFirst(append(slices.Clone(forms), spellingsOf([]string{pw})...))
}

func isURLDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// urlSecrets returns the passwords a URL DSN may hold in every reading
// (net/url's last '@', libpq's and pgx's first '@', a stranded '@' further
// on, the query's password and sslpassword), the query's settings, and
// whether the readings may disagree.
func urlSecrets(dsn string) (pws []string, settings map[string][]string, ambiguous bool) {
	rest := dsn[strings.Index(dsn, "//")+2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	// Any '@' after a ':' may end the password in some reading; only a lone
	// one within the authority is certain (readings differ on where the
	// authority ends when the password holds '/', '?' or '#').
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
		// A query password's unencoded '&' ends it early: each following
		// run is a candidate, and a pair that is no known setting makes
		// the DSN ambiguous.
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

// isKnownKey reports whether pgfast, a backend or pgxpool knows k by name.
func isKnownKey(k string) bool {
	return isPasswordKey(k) || slices.Contains(libpqKeys, k) || slices.Contains(libpqTCPKeys, k) ||
		strings.HasPrefix(k, "pgfast_") || strings.HasPrefix(k, "pool_") ||
		slices.Contains([]string{"database", "ssl", "sslinline", "sslcrl", "gssencmode", "replication", "search_path", "timezone", "datestyle"}, k)
}

func isPasswordKey(k string) bool { return k == "password" || k == "sslpassword" }

// lenientUnescape decodes the valid %XX escapes of s, keeping the rest, as
// pgx reads a URL's keys.
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

// kvSecrets returns a key=value DSN's password values as pgx (ASCII spaces)
// and lib/pq (Unicode spaces) split it, decoded and raw, the settings, and
// whether a split failed on a DSN naming a password (then every piece after
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

// splitKV splits a key=value DSN as libpq does, calling set with each key,
// value and raw value. It reports false where the text does not split.
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

// piecesOf returns the pieces of 4+ bytes that seps cut pws into: what an
// error may quote of a password some parser split elsewhere.
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

const maxSecretFile = 1 << 20

// outsideSecrets returns the passwords from outside the DSN: PGPASSWORD, the
// named service's entries, and the password file's.
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

// serviceFileSecrets returns a service file's password values and every
// non key=value line (a parser's error may quote it).
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

// passFileSecrets returns each line's password field ('\' escapes ':' and '\').
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

// spellingsOf returns the ways each of pws may be written in a message,
// longest first: raw, URL-escaped, %q and JSON quoted, key=value escaped.
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

// longestFirst sorts forms longest first (so a form is scrubbed before a
// shorter one within it) and drops duplicates.
func longestFirst(forms []string) []string {
	slices.SortFunc(forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(forms)
}
