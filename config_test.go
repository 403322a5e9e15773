package pgfast

import (
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testPassword = "SuperSecret9"

func TestBadDSNsAreConfigErrors(t *testing.T) {
	base := "host=127.0.0.1 port=5432 user=u dbname=d sslmode=disable password=" + testPassword + " "
	cases := []struct {
		dsn     string
		key     string // expected ConfigError.Key ("" = any)
		pgxOnly bool
	}{
		{dsn: base + "keepalives=abc", key: "keepalives"},
		{dsn: base + "keepalives=-1", key: "keepalives"},
		{dsn: base + "keepalives_idle=-5", key: "keepalives_idle"},
		{dsn: base + "keepalives_idle=ten", key: "keepalives_idle"},
		{dsn: base + "keepalives_interval=1.5", key: "keepalives_interval"},
		{dsn: base + "keepalives_count=-1", key: "keepalives_count"},
		{dsn: base + "keepalives_count=x", key: "keepalives_count"},
		{dsn: base + "tcp_user_timeout=-1", key: "tcp_user_timeout"},
		{dsn: base + "tcp_user_timeout=99999999999999", key: "tcp_user_timeout"},
		{dsn: base + "target_session_attrs=master", key: "target_session_attrs"},
		{dsn: base + "sslmode=sometimes", key: "sslmode"},
		{dsn: base + "connect_timeout=abc", key: "connect_timeout"},
		{dsn: base + "connect_timeout=-3", key: "connect_timeout"},
		{dsn: base + "pgfast_min_conns=0", key: "pgfast_min_conns"},
		{dsn: base + "pgfast_min_conns=abc", key: "pgfast_min_conns"},
		{dsn: base + "pgfast_min_conns=5000", key: "pgfast_min_conns"},
		{dsn: base + "pgfast_wait_ready=maybe", key: "pgfast_wait_ready"},
		{dsn: base + "pgfast_dns_recheck=-1", key: "pgfast_dns_recheck"},
		{dsn: base + "pgfast_typo=1", key: "pgfast_typo"},
		{dsn: base + "load_balance_hosts=roundrobin", key: "load_balance_hosts"},
		{dsn: base + "port=notaport", key: "port"},
		{dsn: base + "port=99999", key: "port"},
		{dsn: base + "hostaddr=not-an-ip", key: "hostaddr"},
		{dsn: "postgres://u:" + testPassword + "@localhost:abc/db"},
		{dsn: "postgres://u:" + testPassword + "@localhost/db?keepalives_idle=x", key: "keepalives_idle"},
		{dsn: "postgresql://u:" + testPassword + "@localhost/db?tcp_user_timeout=-2", key: "tcp_user_timeout"},
		{dsn: "postgres://u:" + testPassword + "@localhost/db?sslmode=nope", key: "sslmode"},
		{dsn: "host=a,b hostaddr=127.0.0.1,127.0.0.2,127.0.0.3 password=" + testPassword, key: "hostaddr", pgxOnly: true},
		{dsn: "host='unterminated password=" + testPassword},
	}
	for _, b := range backends {
		for _, tc := range cases {
			if tc.pgxOnly && b.backend != PGX {
				continue
			}
			t.Run(b.name+"/"+tc.dsn, func(t *testing.T) {
				_, err := NewConnector(tc.dsn, WithBackend(b.backend))
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("got %T %v, want *ConfigError", err, err)
				}
				if tc.key != "" && ce.Key != tc.key {
					t.Errorf("Key = %q, want %q (%v)", ce.Key, tc.key, err)
				}
				if strings.Contains(err.Error(), testPassword) {
					t.Errorf("error contains the password: %v", err)
				}
				// sql.Open reports it too (driver.DriverContext).
				if _, err := sql.Open(b.name, tc.dsn); !errors.As(err, &ce) {
					t.Errorf("sql.Open: got %v, want *ConfigError", err)
				}
			})
		}
	}
}

func TestConfigDefaultsAndValues(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c, err := NewConnector("host=db.internal port=1 user=u sslmode=disable", WithBackend(b.backend))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.Config()
			want := Config{
				ConnectTimeout: 10 * time.Second, Keepalives: true,
				KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3,
				TCPUserTimeout: 0, TargetSessionAttrs: "any", LoadBalanceHosts: "disable",
				MinConns: 1, DNSRecheck: 5 * time.Second, Share: true,
			}
			got.Hosts = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
			}

			c2, err := NewConnector("host=127.0.0.1,127.0.0.2 port=1,2 user=u sslmode=disable connect_timeout=3 keepalives=0"+
				" keepalives_idle=0 keepalives_interval=2 keepalives_count=0 tcp_user_timeout=0 target_session_attrs=read-write"+
				" load_balance_hosts=random pgfast_min_conns=4 pgfast_wait_ready=1 pgfast_dns_recheck=0 pgfast_share=0", WithBackend(b.backend))
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			got = c2.Config()
			hosts := got.Hosts
			got.Hosts = nil
			want = Config{
				ConnectTimeout: 3 * time.Second, KeepalivesInterval: 2 * time.Second,
				TargetSessionAttrs: "read-write", LoadBalanceHosts: "random", MinConns: 4, WaitReady: true,
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("values:\n got %+v\nwant %+v", got, want)
			}
			if len(hosts) != 2 || hosts[0].String() != "127.0.0.1:1" || hosts[1].String() != "127.0.0.2:2" {
				t.Errorf("hosts = %v", hosts)
			}
		})
	}
}

func TestTargetSessionAttrsAllSixValues(t *testing.T) {
	for _, b := range backends {
		for _, v := range []string{"any", "read-write", "read-only", "primary", "standby", "prefer-standby"} {
			c, err := NewConnector("host=127.0.0.1 port=1 sslmode=disable target_session_attrs="+v, WithBackend(b.backend))
			if err != nil {
				t.Fatalf("%s %s: %v", b.name, v, err)
			}
			if got := c.Config().TargetSessionAttrs; got != v {
				t.Errorf("%s: target_session_attrs %s read back as %s", b.name, v, got)
			}
			c.Close()
		}
	}
}

func TestPasswordOf(t *testing.T) {
	cases := map[string]string{
		"host=a password=pw1 user=u":              "pw1",
		"host=a password = 'p w\\'2' user=u":      "p w'2",
		"postgres://u:p%40w3@h/db":                "p@w3",
		"postgres://u@h/db?password=pw4&x=1":      "pw4",
		"host=a user=u":                           "",
		"postgresql://u:pw5@h1:1,h2:2/db?sslmode": "pw5",
	}
	for dsn, want := range cases {
		if got := passwordOf(dsn); got != want {
			t.Errorf("passwordOf(%q) = %q, want %q", dsn, got, want)
		}
	}
}

// FuzzParseDSN checks that no DSN makes the parser panic, and that a
// rejected DSN's error never shows its password.
func FuzzParseDSN(f *testing.F) {
	for _, seed := range []string{
		"host=localhost port=5432 user=u password=" + testPassword,
		"postgres://u:" + testPassword + "@h:1/d?keepalives_idle=3&pgfast_min_conns=2",
		"host=a,b port=1,2 target_session_attrs=read-write tcp_user_timeout=100",
		"keepalives='1' password='x y'",
		"postgresql://[::1]:5432/db?hostaddr=::1",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		for _, b := range []Backend{PGX, LibPQ} {
			_, cfg, err := parseDSN(b, dsn)
			if err != nil {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("%v: %T is not a *ConfigError", b, err)
				}
				if pw := passwordOf(dsn); len(pw) >= 8 && strings.Contains(err.Error(), pw) {
					t.Fatalf("%v: error shows the password: %v", b, err)
				}
				continue
			}
			if cfg.MinConns < 1 || cfg.ConnectTimeout <= 0 {
				t.Fatalf("%v: bad effective config %+v", b, cfg)
			}
		}
	})
}

func TestHostsListedOnceWhateverTheSSLMode(t *testing.T) {
	for _, b := range backends {
		for _, mode := range []string{"disable", "prefer", "allow", "require"} {
			c, err := NewConnector("host=a.example,b.example port=1,2 sslmode="+mode, WithBackend(b.backend))
			if err != nil {
				t.Fatalf("%s sslmode=%s: %v", b.name, mode, err)
			}
			if h := c.Config().Hosts; len(h) != 2 || h[0].String() != "a.example:1" || h[1].String() != "b.example:2" {
				t.Errorf("%s sslmode=%s: hosts %v", b.name, mode, h)
			}
			c.Close()
		}
	}
}
