package pgfast

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lib/pq"
)

// fuzzParseBound is how long one parse may take before it counts as a hang.
const fuzzParseBound = 2 * time.Second

// fuzzFileKeys are keys that make the backends' parsers read a file
// (pgx reads sslrootcert, sslcert, sslkey, passfile and the service file
// inside ParseConfig, as raw pgx does): a fuzzer that names /dev/zero
// would measure the file system, not the parser.
var fuzzFileKeys = []string{"sslrootcert", "sslcert", "sslkey", "passfile", "servicefile", "service"}

// FuzzParseDSNBounds is the property "every option is bounded" over whole
// DSNs (key/value and URL), parse only, no network, on the three parse
// paths (pgx, lib/pq, and NewPool's pgxpool.ParseConfig): no DSN panics or
// hangs a parse; a DSN pgfast accepts has every setting within its range
// and the raw driver's parser accepts it too; a DSN pgfast refuses is a
// *ConfigError, which names the key whenever the raw parser accepted the
// DSN (then the refusal is pgfast's own check, and every one names its
// key). When the raw parser refuses it, the *ConfigError carries the
// driver's reason and names a key when that reason does: a syntax error
// ("unterminated quoted string") belongs to no key.
//
// The seed corpus runs in plain go test; scripts/fuzz runs it for minutes.
func FuzzParseDSNBounds(f *testing.F) {
	for _, seed := range []string{
		"host=127.0.0.1 port=5432 user=u connect_timeout=2147483647",
		"host=a,b,c,d port=1,2,3,4 connect_timeout=2147483647 target_session_attrs=read-write",
		"host=a connect_timeout=18446744074",
		"host=a connect_timeout=36028797018963973",
		"host=a connect_timeout=9223372036854775808",
		"host=a connect_timeout=-1",
		"host=a connect_timeout='+5'",
		"host=a connect_timeout=' 5'",
		"host=a connect_timeout=5 connect_timeout=18446744074",
		"host=a keepalives_count=200 keepalives_idle=40000",
		"host=a keepalives_idle=32767 keepalives_interval=32767 keepalives_count=127 tcp_user_timeout=2147483647",
		"host=a tcp_user_timeout=2147483648",
		"host=a keepalives=2",
		"host=a keepalives_idle='1e3'",
		"host=a keepalives_interval=' 5 '",
		"host=a pgfast_min_conns=0",
		"host=a pgfast_min_conns=1000 pgfast_dns_recheck=2147483647 pgfast_wait_ready=1",
		"host=a pgfast_dns_recheck=99999999999999999999",
		"host=a pgfast_typo=1",
		"host=a pool_max_conns=0",
		"host=a pool_health_check_period=0s",
		"host=a pool_min_conns=-1 pool_max_conn_lifetime=1h",
		"postgres://u@h:1/d?connect_timeout=18446744074",
		"postgres://u@h:1/d?connect_timeout=%2B5&keepalives_count=128",
		"postgresql://u:p@h1:1,h2:2/d?keepalives_idle=40000",
		"postgresql://u@h/d?connect_timeout=&keepalives=",
		"postgres://u@h:99999/d",
		"postgres://u@[::1/d",
		"postgres://u@h/d?tcp_user_timeout=1&tcp_user_timeout=-1",
		"postgres://u@h/d?pool_max_conns=abc",
		"host='unterminated",
		"host=a connect_timeout",
		"=5",
		"host=a\x00 connect_timeout=5",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		for _, k := range fuzzFileKeys {
			if strings.Contains(dsn, k) {
				t.Skip("names a file the parser would read")
			}
		}
		for _, path := range fuzzParsePaths {
			var cfg *Config
			err := boundedParse(t, path.name, dsn, func() (err error) {
				cfg, err = path.parse(dsn)
				return err
			})
			rawErr := boundedParse(t, path.name+" raw", dsn, func() error { return path.raw(dsn) })
			if err == nil {
				if rawErr != nil {
					t.Fatalf("%s: pgfast accepted what the raw parser refuses (%v)", path.name, rawErr)
				}
				if why := configOutOfRange(cfg); why != "" {
					t.Fatalf("%s: accepted with %s", path.name, why)
				}
				continue
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %T %v is not a *ConfigError", path.name, err, err)
			}
			if rawErr == nil && ce.Key == "" {
				t.Fatalf("%s: %v names no key, and the raw parser accepted the DSN", path.name, err)
			}
		}
	})
}

// fuzzParsePaths are the parse halves of sql.Open / NewConnector (per
// backend) and NewPool, each with the raw driver's own parser.
var fuzzParsePaths = []struct {
	name  string
	parse func(dsn string) (*Config, error)
	raw   func(dsn string) error
}{
	{"pgx", func(dsn string) (*Config, error) {
		_, cfg, err := parseDSN(PGX, dsn)
		return cfg, err
	}, func(dsn string) error {
		_, err := pgx.ParseConfig(dsn)
		return err
	}},
	{"lib/pq", func(dsn string) (*Config, error) {
		_, cfg, err := parseDSN(LibPQ, dsn)
		return cfg, err
	}, func(dsn string) error {
		_, err := pq.NewConfig(dsn)
		return err
	}},
	// NewPool up to the point where it starts the connector and the pool.
	{"pgxpool", func(dsn string) (*Config, error) {
		pc, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, namePoolKey(configErrorFrom(dsn, err))
		}
		if err := checkPoolConfig(pc); err != nil {
			return nil, err
		}
		a, p, err := pgxAdapterFor(pc.ConnConfig, secretFormsOf(dsn))
		if err != nil {
			return nil, err
		}
		return configure(a, p)
	}, func(dsn string) error {
		_, err := pgxpool.ParseConfig(dsn)
		return err
	}},
}

// boundedParse runs parse in its own goroutine and fails the test when it
// panics or takes longer than fuzzParseBound.
func boundedParse(t *testing.T, name, dsn string, parse func() error) error {
	t.Helper()
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{panic: p}
			}
		}()
		done <- result{err: parse()}
	}()
	timer := time.NewTimer(fuzzParseBound)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.panic != nil {
			t.Fatalf("%s: parsing %q panicked: %v", name, dsn, r.panic)
		}
		return r.err
	case <-timer.C:
		t.Fatalf("%s: parsing %q took more than %s", name, dsn, fuzzParseBound)
		return nil
	}
}

// configOutOfRange says which effective setting of cfg is out of the range
// the code and the kernel accept, "" when none is.
func configOutOfRange(cfg *Config) string {
	check := []struct {
		name      string
		v, lo, hi int64
	}{
		{"ConnectTimeout", int64(cfg.ConnectTimeout), 1, int64(maxConnectTimeout)},
		{"KeepalivesIdle", int64(cfg.KeepalivesIdle), 0, int64(32767 * time.Second)},
		{"KeepalivesInterval", int64(cfg.KeepalivesInterval), 0, int64(32767 * time.Second)},
		{"KeepalivesCount", int64(cfg.KeepalivesCount), 0, 127},
		{"TCPUserTimeout", int64(cfg.TCPUserTimeout), 0, int64(2147483647 * time.Millisecond)},
		{"MinConns", int64(cfg.MinConns), 0, 1000}, // 0: a pool's connector
		{"DNSRecheck", int64(cfg.DNSRecheck), 0, int64(2147483647 * time.Second)},
		{"connectBudget", int64(cfg.connectBudget()), 1, int64(maxDuration)},
	}
	if cfg.ConnectTimeout%time.Second != 0 {
		// A DSN's connect_timeout is whole seconds: anything else is the
		// drivers' arithmetic wrapping around.
		return fmt.Sprintf("ConnectTimeout = %s, not whole seconds", cfg.ConnectTimeout)
	}
	for _, c := range check {
		if c.v < c.lo || c.v > c.hi {
			return fmt.Sprintf("%s = %d, out of [%d, %d]", c.name, c.v, c.lo, c.hi)
		}
	}
	return ""
}
