// Command multitenant is an HTTP server hosting several tenants, each with
// its own PostgreSQL database behind its own pgfast *sql.DB. A tenant whose
// database is down never delays the server's start nor another tenant's
// requests: pgfast connects in the background, the health endpoints read
// the connectors' state without touching a database, and a query on a
// tenant that is down fails at once with 503.
//
//	go run ./examples/multitenant -tenant a='host=127.0.0.1 dbname=a' -tenant b=postgres://app@db-b/app
//	go run ./examples/multitenant -tenants tenants.conf -addr 127.0.0.1:8080 -driver pgfast-pq
//
// tenants.conf holds one "id=dsn" per line (blank lines and # comments are
// skipped). Then:
//
//	curl -i localhost:8080/readyz             # the process: 200 while it serves, whatever one tenant's state
//	curl -i localhost:8080/tenants/a/readyz   # tenant a's database: 200 when ready, else 503 with why
//	curl -i localhost:8080/tenants/a/query    # SELECT now() on tenant a (503 at once when a is down)
//
// The server listens on 127.0.0.1:8080 unless -addr says otherwise. Point the
// pod's readiness probe at /readyz, never at a tenant's endpoint (one dead
// tenant would take every tenant out of service), and no liveness probe at
// any of them (a restart does not bring a database back).
//
// Ctrl+C shuts the server down gracefully and closes every tenant's database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgfast/pgfast"
)

// specFlags collects repeated -tenant id=dsn flags.
type specFlags []TenantSpec

func (f *specFlags) String() string {
	ids := make([]string, len(*f))
	for i, s := range *f {
		ids[i] = s.ID
	}
	return strings.Join(ids, ",")
}

func (f *specFlags) Set(v string) error {
	spec, err := ParseSpec(v)
	if err != nil {
		return err
	}
	*f = append(*f, spec)
	return nil
}

func main() {
	var specs specFlags
	flag.Var(&specs, "tenant", "a tenant as id=dsn (repeatable)")
	file := flag.String("tenants", "", "file with one id=dsn per line")
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	driverName := flag.String("driver", "pgfast", `"pgfast" (pgx) or "pgfast-pq" (lib/pq)`)
	queryTimeout := flag.Duration("query-timeout", 2*time.Second, "bound of each /tenants/{id}/query request")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, specs, *file, *addr, *driverName, *queryTimeout); err != nil {
		log.Error("multitenant", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, specs []TenantSpec, file, addr, driverName string, queryTimeout time.Duration) error {
	var backend pgfast.Backend
	switch driverName {
	case "pgfast":
		backend = pgfast.PGX
	case "pgfast-pq":
		backend = pgfast.LibPQ
	default:
		return fmt.Errorf("-driver must be pgfast or pgfast-pq, not %q", driverName)
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		fromFile, err := ParseSpecs(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		specs = append(fromFile, specs...)
	}
	if len(specs) == 0 {
		return errors.New("no tenants: pass -tenant id=dsn (repeatable) or -tenants FILE")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Returns at once whatever state the databases are in.
	ts, err := OpenTenants(specs, Options{Backend: backend, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := ts.Close(); err != nil {
			log.Error("closing tenants", "err", err)
		}
		log.Info("closed every tenant's database")
	}()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           Handler(ts, queryTimeout),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "tenants", len(specs), "driver", driverName)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
