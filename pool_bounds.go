package pgfast

import (
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// poolKeys are pgxpool's own DSN keys, which pgxpool.ParseConfig parses.
var poolKeys = []string{
	"pool_max_conn_lifetime_jitter", "pool_health_check_period", "pool_max_conn_idle_time",
	"pool_max_conn_lifetime", "pool_min_idle_conns", "pool_ping_timeout", "pool_max_conns", "pool_min_conns",
}

// namePoolKey fills in the key of a *ConfigError from pgxpool.ParseConfig,
// whose messages name a pool_ key that configErrorFrom does not know.
func namePoolKey(ce *ConfigError) *ConfigError {
	if ce != nil && ce.Key == "" {
		for _, k := range poolKeys {
			if containsWord(ce.Reason, k) {
				ce.Key = k
				break
			}
		}
	}
	return ce
}

// checkPoolConfig refuses the pool settings raw pgxpool accepts and then
// fails on: a health check period that is not positive panics pgxpool's
// background goroutine (time.NewTicker), which ends the process. Odd values
// that behave in pgxpool as they do raw (a negative minimum, lifetime, idle
// time, jitter or ping timeout) are left to it: drop-in means a
// configuration raw pgxpool runs with keeps running.
func checkPoolConfig(pc *pgxpool.Config) error {
	switch {
	case pc.HealthCheckPeriod <= 0:
		return &ConfigError{Key: "pool_health_check_period", Value: pc.HealthCheckPeriod.String(),
			Reason: "must be positive (HealthCheckPeriod; pgxpool's health check would panic)"}
	case pc.MaxConns < 1:
		return &ConfigError{Key: "pool_max_conns", Value: itoa32(pc.MaxConns), Reason: "must be at least 1 (MaxConns)"}
	}
	return nil
}

func itoa32(n int32) string { return strconv.Itoa(int(n)) }
