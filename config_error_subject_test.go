package pgfast

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestConfigErrorNamesWhatWasGiven: a *ConfigError says what the caller gave
// that is invalid: the DSN, the *pgxpool.Config of NewPoolWithConfig, the
// *pgx.ConnConfig of NewConnectorFromConfig, or an option. None of these
// makes a connection.
func TestConfigErrorNamesWhatWasGiven(t *testing.T) {
	mine := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("mine") }
	poolCfg := func(t *testing.T, dsn string) *pgxpool.Config {
		t.Helper()
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	connCfg := func(t *testing.T, dsn string) *pgx.ConnConfig {
		t.Helper()
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}
	const dsn = "host=127.0.0.1 port=1 password=sekrit"
	for _, c := range []struct {
		name, prefix, key string
		call              func(t *testing.T) error
	}{
		{"pool DialFunc", "pgfast: invalid pgxpool config: DialFunc: ", "DialFunc", func(t *testing.T) error {
			cfg := poolCfg(t, dsn)
			cfg.ConnConfig.DialFunc = mine
			_, err := NewPoolWithConfig(context.Background(), cfg)
			return err
		}},
		{"pool LookupFunc", "pgfast: invalid pgxpool config: LookupFunc: ", "LookupFunc", func(t *testing.T) error {
			cfg := poolCfg(t, dsn)
			cfg.ConnConfig.LookupFunc = func(context.Context, string) ([]string, error) { return nil, nil }
			_, err := NewPoolWithConfig(context.Background(), cfg)
			return err
		}},
		{"pool nil config", "pgfast: invalid pgxpool config: ", "", func(t *testing.T) error {
			_, err := NewPoolWithConfig(context.Background(), nil)
			return err
		}},
		{"pool pgfast key", "pgfast: invalid pgxpool config: keepalives_idle=", "keepalives_idle", func(t *testing.T) error {
			_, err := NewPoolWithConfig(context.Background(), poolCfg(t, dsn+" keepalives_idle=abc"))
			return err
		}},
		{"pool option", "pgfast: invalid option: WithBackend=", "WithBackend", func(t *testing.T) error {
			_, err := NewPoolWithConfig(context.Background(), poolCfg(t, dsn), WithBackend(LibPQ))
			return err
		}},
		{"NewPool option", "pgfast: invalid option: WithBackend=", "WithBackend", func(t *testing.T) error {
			_, err := NewPool(context.Background(), dsn, WithBackend(LibPQ))
			return err
		}},
		{"NewPool DSN", "pgfast: invalid DSN: keepalives_idle=", "keepalives_idle", func(t *testing.T) error {
			_, err := NewPool(context.Background(), dsn+" keepalives_idle=abc")
			return err
		}},
		{"ConnConfig DialFunc", "pgfast: invalid *pgx.ConnConfig: DialFunc: ", "DialFunc", func(t *testing.T) error {
			cc := connCfg(t, dsn)
			cc.DialFunc = mine
			_, err := NewConnectorFromConfig(cc)
			return err
		}},
		{"ConnConfig hand-built", "pgfast: invalid *pgx.ConnConfig: ", "", func(t *testing.T) error {
			_, err := NewConnectorFromConfig(&pgx.ConnConfig{})
			return err
		}},
		{"ConnConfig pgfast key", "pgfast: invalid *pgx.ConnConfig: keepalives_idle=", "keepalives_idle", func(t *testing.T) error {
			_, err := NewConnectorFromConfig(connCfg(t, dsn+" keepalives_idle=abc"))
			return err
		}},
		{"ConnConfig option", "pgfast: invalid option: WithBackend=", "WithBackend", func(t *testing.T) error {
			_, err := NewConnectorFromConfig(connCfg(t, dsn), WithBackend(LibPQ))
			return err
		}},
		{"NewConnector option", "pgfast: invalid option: WithMinConns", "WithMinConns", func(t *testing.T) error {
			_, err := NewConnector(dsn, WithMinConns(5000))
			return err
		}},
		{"NewConnector DSN", "pgfast: invalid DSN: keepalives_idle=", "keepalives_idle", func(t *testing.T) error {
			_, err := NewConnector(dsn + " keepalives_idle=abc")
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(t)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *ConfigError", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, c.prefix) || strings.Contains(msg, "sekrit") {
				t.Errorf("error %q, want it to start with %q (and no password)", msg, c.prefix)
			}
			if ce.Key != c.key {
				t.Errorf("Key %q, want %q", ce.Key, c.key)
			}
		})
	}
}
