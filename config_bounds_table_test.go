package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// boundsKey is a numeric DSN key with the range pgfast accepts.
type boundsKey struct {
	name     string
	min, max int64
	// trims says whether whitespace around the number is skipped, as libpq
	// does. connect_timeout is read by the backend's own parser, which
	// does not: " 5" is refused where libpq takes 5.
	trims bool
	// value reads the parsed setting back as a number of its units.
	value func(*Config) int64
	def   int64 // the value when unset
}

// boundsKeys lists every numeric key pgfast accepts in a DSN. The ranges are
// written here from libpq and the kernel, not read from config.go:
// connect_timeout is libpq's int; Linux's setsockopt refuses TCP_KEEPIDLE
// and TCP_KEEPINTVL above 32767 s, TCP_KEEPCNT above 127, and a negative
// TCP_USER_TIMEOUT (an int of ms).
var boundsKeys = []boundsKey{
	{"connect_timeout", 0, math.MaxInt32, false, func(c *Config) int64 { return int64(c.ConnectTimeout / time.Second) }, 0},
	{"keepalives", 0, 1, true, func(c *Config) int64 { return map[bool]int64{true: 1}[c.Keepalives] }, 1},
	{"keepalives_idle", 0, 32767, true, func(c *Config) int64 { return int64(c.KeepalivesIdle / time.Second) }, 10},
	{"keepalives_interval", 0, 32767, true, func(c *Config) int64 { return int64(c.KeepalivesInterval / time.Second) }, 5},
	{"keepalives_count", 0, 127, true, func(c *Config) int64 { return int64(c.KeepalivesCount) }, 3},
	{"tcp_user_timeout", 0, math.MaxInt32, true, func(c *Config) int64 { return int64(c.TCPUserTimeout / time.Millisecond) }, 0},
	{"pgfast_min_conns", 1, 1000, true, func(c *Config) int64 { return int64(c.MinConns) }, 1},
	{"pgfast_dns_recheck", 0, math.MaxInt32, true, func(c *Config) int64 { return int64(c.DNSRecheck / time.Second) }, 0},
	{"pgfast_share", 0, 1, true, func(c *Config) int64 { return map[bool]int64{true: 1}[c.Share] }, 1},
}

// boundsValues are the values tried for every key, around its range and
// past every integer width on the way.
func boundsValues(k boundsKey) []string {
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	return []string{
		i(k.min - 1), i(k.min), i(k.min + 1), i(k.max - 1), i(k.max), i(k.max + 1),
		"-1", "-0", "+5", "010",
		"2147483647", "2147483648", "4294967296", "9223372036", "9223372037",
		"18446744074", "36028797018963968", "36028797018963973",
		"9223372036854775807", "9223372036854775808", "-9223372036854775809", "99999999999999999999",
		"abc", "1e3", "1.5", "0x10", "1_000", "5abc", "٣", "+-5", "",
		" 5", "5 ", "\t5\n", "\u00a05",
	}
}

// libpqInt parses v as libpq's parse_int_param does (strtol, base 10, then
// "numval != (int) numval"): C whitespace around, an optional sign, digits,
// an int's range.
func libpqInt(v string, trims bool) (int64, bool) {
	if trims {
		v = strings.Trim(v, " \t\n\v\f\r")
	}
	neg := false
	if v != "" && (v[0] == '+' || v[0] == '-') {
		neg = v[0] == '-'
		v = v[1:]
	}
	if v == "" {
		return 0, false
	}
	var n int64
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > math.MaxInt32+1 {
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, false
	}
	return n, true
}

// boundsDSNs embeds key=v in both DSN forms.
func boundsDSNs(key, v string) map[string]string {
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	return map[string]string{
		"kv":  "host=127.0.0.1 port=1 user=u dbname=d sslmode=disable " + key + "=" + quoted,
		"url": "postgres://u@127.0.0.1:1/d?sslmode=disable&" + key + "=" + percentEncode(v),
	}
}

// percentEncode encodes every byte but the URI's unreserved ones.
func percentEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-._~+", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
		}
	}
	return b.String()
}

// TestEveryNumericKeyBounded is the property "every option is bounded": for
// every numeric key × value × DSN form × entry point, the DSN parses to
// exactly the number given (within the key's range) or is refused with a
// *ConfigError naming the key; never a wrapped or clamped value.
//
// Where the raw drivers or libpq differ (the expectation is libpq's, and
// the raw drivers never check these ranges):
//   - connect_timeout: pgx and lib/pq multiply it into a time.Duration
//     without an overflow check (18446744074 → 290ms) and lib/pq takes a
//     negative value as "none"; pgfast refuses both. Their parsers also
//     refuse whitespace around the number, which libpq skips; pgfast keeps
//     that refusal (a clear error). 0 is pgfast's default (10 s), not
//     libpq's "wait forever".
//   - keepalives: libpq takes any int (non-zero is on); pgfast takes 0 or 1.
//   - keepalives_idle/_interval/_count: libpq passes any int to setsockopt,
//     which refuses the kernel's out-of-range values at every connection
//     (EINVAL); 0 is pgfast's "OS default" where libpq passes 0 on (EINVAL
//     on Linux). pgfast refuses at sql.Open, on every OS.
//   - lib/pq reads a URL's query as a form ("+" is a space, so "+5" is
//     " 5") and drops an empty value; pgfast-pq reads what lib/pq read.
//   - the raw drivers send keepalives*, tcp_user_timeout and pgfast_* to
//     the server as runtime parameters, which the server refuses.
func TestEveryNumericKeyBounded(t *testing.T) {
	// The table covers every numeric key config.go parses.
	covered := map[string]bool{}
	for _, k := range boundsKeys {
		covered[k.name] = true
	}
	for _, k := range numericKeys {
		if !covered[k.name] {
			t.Errorf("%s has no row in boundsKeys", k.name)
		}
	}
	for _, k := range boundsKeys {
		for _, v := range boundsValues(k) {
			n, ok := libpqInt(v, k.trims)
			accept := ok && n >= k.min && n <= k.max
			for form, dsn := range boundsDSNs(k.name, v) {
				for _, b := range backends {
					_, cfg, err := parseDSN(b.backend, dsn)
					if b.backend == LibPQ && form == "url" {
						// lib/pq decodes a URL's query as a form: "+" is a
						// space; and it drops an empty value (the key is
						// unset), as raw lib/pq does.
						pv := strings.ReplaceAll(v, "+", " ")
						pn, pok := libpqInt(pv, k.trims)
						if pv == "" {
							pn, pok = k.def, true
						}
						checkBound(t, b.name+"/"+form, k, v, pok && pn >= k.min && pn <= k.max, pn, cfg, err)
						continue
					}
					checkBound(t, b.name+"/"+form, k, v, accept, n, cfg, err)
				}
				pool, err := NewPool(context.Background(), dsn)
				var cfg *Config
				if err == nil {
					c := PoolConnector(pool).Config()
					cfg = &c
					if k.name == "pgfast_min_conns" {
						cfg.MinConns = int(n) // a pool's connector keeps no connections warm: nothing to read back
					}
					pool.Close()
				}
				checkBound(t, "pool/"+form, k, v, accept, n, cfg, err)
			}
		}
	}
}

// checkBound checks one parse against the expectation.
func checkBound(t *testing.T, where string, k boundsKey, v string, accept bool, n int64, cfg *Config, err error) {
	t.Helper()
	if !accept {
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != k.name {
			t.Errorf("%s %s=%q: got %v, want a *ConfigError naming %s", where, k.name, v, err, k.name)
		}
		return
	}
	if err != nil {
		t.Errorf("%s %s=%q: %v, want it accepted", where, k.name, v, err)
		return
	}
	want := n
	if k.name == "connect_timeout" && n == 0 {
		want = int64(DefaultConnectTimeout / time.Second)
	}
	if got := k.value(cfg); got != want {
		t.Errorf("%s %s=%q: read as %d, want %d", where, k.name, v, got, want)
	}
}

// TestOptionsBounded: WithMinConns is held to pgfast_min_conns' range on
// every entry point (0 leaves the DSN's value).
func TestOptionsBounded(t *testing.T) {
	const dsn = "host=127.0.0.1 port=1 user=u sslmode=disable"
	for _, n := range []int{math.MinInt, -1, 1001, math.MaxInt32 + 1, math.MaxInt} {
		c, err := NewConnector(dsn, WithMinConns(n))
		if err == nil {
			c.Close()
		}
		wantConfigKey(t, err, "WithMinConns")
		pool, err := NewPool(context.Background(), dsn, WithMinConns(n))
		if err == nil {
			pool.Close()
		}
		wantConfigKey(t, err, "WithMinConns")
	}
	for _, n := range []int{0, 1, 1000} {
		c, err := NewConnector(dsn, WithMinConns(n))
		if err != nil {
			t.Fatalf("WithMinConns(%d): %v", n, err)
		}
		if got := c.Config().MinConns; got != max(n, DefaultMinConns) {
			t.Errorf("WithMinConns(%d): MinConns = %d", n, got)
		}
		c.Close()
	}
	// sql.Open reports a bad DSN value too.
	if _, err := sql.Open("pgfast", dsn+" keepalives_count=128"); err == nil {
		t.Error("sql.Open accepted keepalives_count=128")
	}
}

// TestPoolKeysNamed: pgxpool's own keys, refused by pgxpool.ParseConfig, are
// named in the *ConfigError; a health check period that is not positive
// (raw pgxpool's background goroutine panics on it, ending the process) is
// refused.
func TestPoolKeysNamed(t *testing.T) {
	cases := map[string]string{
		"pool_max_conns":           "abc",
		"pool_min_conns":           "x",
		"pool_min_idle_conns":      "1.5",
		"pool_max_conn_lifetime":   "1e3",
		"pool_health_check_period": "0s",
	}
	for key, v := range cases {
		pool, err := NewPool(context.Background(), "postgres://u@127.0.0.1:1/d?sslmode=disable&"+key+"="+v)
		if err == nil {
			pool.Close()
		}
		wantConfigKey(t, err, key)
	}
	pool, err := NewPool(context.Background(), "postgres://u@127.0.0.1:1/d?sslmode=disable&pool_health_check_period=-1s")
	if err == nil {
		pool.Close()
	}
	wantConfigKey(t, err, "pool_health_check_period")
	// Negative minimums do nothing in raw pgxpool; drop-in keeps them working.
	for _, key := range []string{"pool_min_conns", "pool_min_idle_conns"} {
		pool, err := NewPool(context.Background(), "postgres://u@127.0.0.1:1/d?sslmode=disable&"+key+"=-1")
		if err != nil {
			t.Errorf("%s=-1 (raw pgxpool accepts it): %v", key, err)
			continue
		}
		pool.Close()
	}
}
