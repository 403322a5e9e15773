//go:build linux

package main

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

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

// waitQuiet waits until the server is ready for the next run (see
// fleet.WaitQuiet; at most 4 minutes), then 2 s for its CPU to settle.
func waitQuiet(srv *pgtest.Server) {
	if waited := fleet.WaitQuiet(srv, 4*time.Minute); waited > 5*time.Second {
		fmt.Fprintf(os.Stderr, "  (the server took %.1fs to drain the previous run)\n", waited.Seconds())
	}
	time.Sleep(2 * time.Second)
}
