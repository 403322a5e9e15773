package pgfast_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast"
)

// NewPool replaces pgxpool.New: it returns pgx's own *pgxpool.Pool at once,
// without waiting for the network. While the database is down, a query
// fails at once with ErrNotReady instead of dialling; PoolConnector gives the
// pool's Ready, State and Stats.
func ExampleNewPool() {
	ctx := context.Background()
	pool, err := pgfast.NewPool(ctx, downDSN+"&pool_max_conns=8&keepalives_idle=5")
	if err != nil {
		fmt.Println(err) // a *pgfast.ConfigError
		return
	}
	defer pool.Close() // stops pgfast's goroutines for the pool too

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = pgfast.PoolConnector(pool).Ready(short)
	fmt.Println("ready:", err == nil)

	_, err = pool.Exec(ctx, "SELECT 1")
	fmt.Println("fails fast while down:", errors.Is(err, pgfast.ErrNotReady))
	fmt.Println("state:", pgfast.PoolConnector(pool).State())
	// Output:
	// ready: false
	// fails fast while down: true
	// state: down
}

// NewPoolWithConfig equips a configuration the application built: its own
// settings and hooks stay (pgfast's hooks run first).
func ExampleNewPoolWithConfig() {
	cfg, err := pgxpool.ParseConfig(downDSN)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.MaxConns = 20
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET application_name = 'billing'")
		return err
	}
	pool, err := pgfast.NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	fmt.Println("max conns:", pool.Config().MaxConns)
	// Output:
	// max conns: 20
}
