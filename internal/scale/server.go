//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// startServer starts the run's PostgreSQL (pgtest: PostgreSQL as
// installed) as a new user's server: listen_addresses=localhost, SCRAM,
// log_connections, with a role per front end. An interrupt cleans it up.
func startServer(c config) (*pgtest.Server, error) {
	srvs, err := startServers(c, 1)
	if err != nil {
		return nil, err
	}
	return srvs[0], nil
}

// startServers starts n servers as startServer does.
func startServers(c config, n int) ([]*pgtest.Server, error) {
	var srvs []*pgtest.Server
	var mu sync.Mutex
	cleanup := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range srvs {
			s.Cleanup()
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		cleanup()
		os.Exit(130)
	}()
	for range n {
		srv, err := pgtest.New(pgtest.Options{ListenAddresses: "localhost", Settings: fleet.ServerSettings(c.maxConnections)})
		if err != nil {
			cleanup()
			return nil, err
		}
		mu.Lock()
		srvs = append(srvs, srv)
		mu.Unlock()
		if err := srv.Start(); err != nil {
			cleanup()
			return nil, err
		}
		if err := srv.Exec(fleet.RolesSQL()); err != nil {
			cleanup()
			return nil, err
		}
		version, _ := srv.Query("SHOW server_version")
		fmt.Fprintf(os.Stderr, "PostgreSQL %s on localhost:%d (max_connections=%d, SCRAM, log_connections=on)\n",
			version, srv.Port(), c.maxConnections)
	}
	return srvs, nil
}

// waitQuiet waits until the server is ready for the next run, so that a
// run does not pay for the one before: first a login over TCP must succeed
// (at most 3 minutes; the accept queue is FIFO, so the connections an
// earlier run abandoned in it, each of which the server still forks a
// backend for, are gone), then pg_stat_activity must show no client
// session but psql's own (at most a minute), then 2 s for the server's CPU
// to settle.
func waitQuiet(srv *pgtest.Server) {
	start := time.Now()
	probe := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=30", pgtest.Superuser, srv.Port(), pgtest.Database)
	for deadline := start.Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := pgx.Connect(ctx, probe)
		if err == nil {
			conn.Close(ctx)
			cancel()
			break
		}
		cancel()
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		n, err := srv.Query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
		if err == nil && n == "0" {
			break
		}
	}
	if waited := time.Since(start); waited > 5*time.Second {
		fmt.Fprintf(os.Stderr, "  (the server took %.1fs to drain the previous run)\n", waited.Seconds())
	}
	time.Sleep(2 * time.Second)
}
