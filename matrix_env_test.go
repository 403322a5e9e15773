package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// The environment cells are not parallel: t.Setenv changes the process.

// TestMatrixEnv: libpq's environment variables (PGHOST, PGPORT, PGUSER,
// PGDATABASE, PGSSLMODE, PGCONNECT_TIMEOUT, PGAPPNAME) with an empty DSN,
// raw vs pgfast.
func TestMatrixEnv(t *testing.T) {
	s := server(t)
	t.Setenv("PGHOST", s.Host())
	t.Setenv("PGPORT", strconv.Itoa(s.Port()))
	t.Setenv("PGUSER", pgtest.TrustUser)
	t.Setenv("PGDATABASE", pgtest.Database)
	t.Setenv("PGSSLMODE", "disable")
	t.Setenv("PGCONNECT_TIMEOUT", "5")
	t.Setenv("PGAPPNAME", "matrix_env")
	wantApp := func(ctx context.Context, db *sql.DB) error {
		var app string
		if err := db.QueryRowContext(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil {
			return err
		}
		if app != "matrix_env" {
			return fmt.Errorf("application_name %q, want PGAPPNAME's %q", app, "matrix_env")
		}
		return nil
	}
	runMatrix(t, false, []matrixCell{
		{name: "env-only", dsn: fixedDSN(""), want: "ok", check: wantApp},
		{name: "env+dsn-user", dsn: fixedDSN("user=" + pgtest.ScramUser + " password=" + pgtest.ScramPassword), want: "ok", check: wantApp},
		{name: "env+url", dsn: fixedDSN("postgres://"), want: "ok", check: wantApp},
	})
	t.Run("PGSSLMODE=require-no-tls", func(t *testing.T) {
		t.Setenv("PGSSLMODE", "require")
		runMatrix(t, false, []matrixCell{{name: "refused", dsn: fixedDSN(""), want: "tls refused"}})
	})
	t.Run("PGCONNECT_TIMEOUT=1-silent-server", func(t *testing.T) {
		addr := silentServer(t)
		t.Setenv("PGHOST", "127.0.0.1")
		t.Setenv("PGPORT", strconv.Itoa(addr.Port))
		t.Setenv("PGCONNECT_TIMEOUT", "1")
		runMatrix(t, false, []matrixCell{{name: "timeout", dsn: fixedDSN(""), want: "deadline", wantPQ: "net read"}})
	})
}

// silentServer listens on loopback, accepts and never answers; connections
// are closed at the test's end.
func silentServer(t *testing.T) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr)
}

// TestMatrixServiceAndPassFile: a service file (PGSERVICEFILE + service=)
// and a password file (PGPASSFILE and passfile=) with the scram user,
// raw vs pgfast.
func TestMatrixServiceAndPassFile(t *testing.T) {
	s := server(t)
	dir := t.TempDir()
	passfile := filepath.Join(dir, "pgpass")
	line := fmt.Sprintf("%s:%d:%s:%s:%s\n", s.Host(), s.Port(), pgtest.Database, pgtest.ScramUser, pgtest.ScramPassword)
	if err := os.WriteFile(passfile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongPass := filepath.Join(dir, "pgpass-wrong")
	line = fmt.Sprintf("*:*:*:%s:not-the-password\n", pgtest.ScramUser)
	if err := os.WriteFile(wrongPass, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	servicefile := filepath.Join(dir, "pg_service.conf")
	svc := fmt.Sprintf("[matrix]\nhost=%s\nport=%d\ndbname=%s\nuser=%s\nsslmode=disable\n\n[matrix_trust]\nhost=%s\nport=%d\ndbname=%s\nuser=%s\nsslmode=disable\n",
		s.Host(), s.Port(), pgtest.Database, pgtest.ScramUser, s.Host(), s.Port(), pgtest.Database, pgtest.TrustUser)
	if err := os.WriteFile(servicefile, []byte(svc), 0o600); err != nil {
		t.Fatal(err)
	}
	// No password anywhere else: HOME has no .pgpass.
	t.Setenv("HOME", dir)
	t.Setenv("PGSERVICEFILE", servicefile)
	scramKV := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable", s.Host(), s.Port(), pgtest.Database, pgtest.ScramUser)
	runMatrix(t, false, []matrixCell{
		{name: "service/trust", dsn: fixedDSN("service=matrix_trust"), want: "ok"},
		{name: "service/url", dsn: fixedDSN("postgres:///?service=matrix_trust"), want: "ok"},
		{name: "service+passfile", dsn: fixedDSN("service=matrix passfile=" + passfile), want: "ok"},
		{name: "passfile=", dsn: fixedDSN(scramKV + " passfile=" + passfile), want: "ok"},
		{name: "passfile=/wrong-password", dsn: fixedDSN(scramKV + " passfile=" + wrongPass), want: "sqlstate 28P01"},
		{name: "no-password", dsn: fixedDSN(scramKV), want: "sqlstate 28P01"},
	})
	t.Run("PGPASSFILE", func(t *testing.T) {
		t.Setenv("PGPASSFILE", passfile)
		runMatrix(t, false, []matrixCell{
			{name: "kv", dsn: fixedDSN(scramKV), want: "ok"},
			{name: "service", dsn: fixedDSN("service=matrix"), want: "ok"},
		})
	})
}
