package pgfast

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// certUser is the role that may log in with a client certificate only.
const certUser = "pgfast_cert"

// startTLSServer starts a server of the test's own with ssl=on and a
// certificate chain made now (which does not name 127.0.0.2, where it also
// listens); certUser must log in over TLS with a client
// certificate (pg_hba "cert"), every other role as pgtest configures.
func startTLSServer(t *testing.T) (*pgtest.Server, *pgtest.Certs) {
	t.Helper()
	certs, err := pgtest.NewCerts(certUser)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(certs.Cleanup)
	s := newServer(t, pgtest.Options{ListenAddresses: "127.0.0.1,127.0.0.2,::1", Settings: certs.ServerSettings()})
	err = s.PrependHBA(
		"hostssl\tall\t"+certUser+"\t127.0.0.0/8\tcert",
		"hostssl\tall\t"+certUser+"\t::1/128\tcert",
		"host\tall\t"+certUser+"\tall\treject",
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec("CREATE ROLE " + certUser + " LOGIN"); err != nil {
		t.Fatal(err)
	}
	return s, certs
}

// TestMatrixTLS: sslmode disable/prefer/require/verify-ca/verify-full, client
// certificates and a wrong CA, raw vs pgfast on both backends.
func TestMatrixTLS(t *testing.T) {
	t.Parallel()
	s, certs := startTLSServer(t)
	base := func(host, user string) string {
		return fmt.Sprintf("host=%s port=%d user=%s dbname=%s connect_timeout=5", host, s.Port(), user, pgtest.Database)
	}
	trust := func(host string, kv ...string) func(backendCase) string {
		return fixedDSN(withKV(base(host, pgtest.TrustUser), kv...))
	}
	cert := func(kv ...string) func(backendCase) string {
		return fixedDSN(withKV(base("localhost", certUser), kv...))
	}
	root := "sslrootcert=" + certs.CA
	clientPair := []string{"sslcert=" + certs.ClientCert, "sslkey=" + certs.ClientKey}
	runMatrix(t, true, []matrixCell{
		{name: "disable", dsn: trust("127.0.0.1", "sslmode=disable"), want: "ok"},
		{name: "prefer", dsn: trust("127.0.0.1", "sslmode=prefer"), want: "ok"},
		{name: "require", dsn: trust("127.0.0.1", "sslmode=require"), want: "ok"},
		{name: "verify-ca", dsn: trust("127.0.0.1", "sslmode=verify-ca", root), want: "ok"},
		{name: "verify-full/localhost", dsn: trust("localhost", "sslmode=verify-full", root), want: "ok"},
		{name: "verify-full/127.0.0.1", dsn: trust("127.0.0.1", "sslmode=verify-full", root), want: "ok"},
		{name: "verify-full/::1", dsn: trust("::1", "sslmode=verify-full", root), want: "ok"},
		{name: "client-cert", dsn: cert(append([]string{"sslmode=verify-full", root}, clientPair...)...), want: "ok"},
		{name: "client-cert/require", dsn: cert(append([]string{"sslmode=require"}, clientPair...)...), want: "ok"},
		{name: "client-cert/missing", dsn: cert("sslmode=verify-full", root), want: "sqlstate 28000"},
		{name: "client-cert/no-tls", dsn: cert("sslmode=disable"), want: "sqlstate 28000"},
		{name: "allow", dsn: trust("127.0.0.1", "sslmode=allow"), want: "ok"},
		{name: "verify-ca/unnamed-host", dsn: trust("127.0.0.2", "sslmode=verify-ca", root), want: "ok"},
		{name: "verify-full/unnamed-host", dsn: trust("127.0.0.2", "sslmode=verify-full", root), want: "x509 hostname"},
		{name: "prefer/no-tls-server", dsn: fixedDSN(withKV(server(t).DSN(pgtest.TrustUser), "sslmode=prefer")), want: "ok"},
		{name: "require/no-tls-server", dsn: fixedDSN(withKV(server(t).DSN(pgtest.TrustUser), "sslmode=require")), want: "tls refused"},
		{name: "wrong-ca/verify-full", dsn: trust("localhost", "sslmode=verify-full", "sslrootcert="+certs.WrongCA), want: "x509 unknown authority"},
		{name: "wrong-ca/verify-ca", dsn: trust("127.0.0.1", "sslmode=verify-ca", "sslrootcert="+certs.WrongCA), want: "x509 unknown authority"},
	})
}

// TestMatrixTLSWrongCAReadyAtOnce: with a CA that did not sign the server's
// certificate, verify-full fails; through pgfast the x509 error is reachable
// with errors.As and Ready returns at once (a permanent error), well before
// its context ends.
func TestMatrixTLSWrongCAReadyAtOnce(t *testing.T) {
	t.Parallel()
	s, certs := startTLSServer(t)
	dsn := fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s",
		s.Port(), pgtest.TrustUser, pgtest.Database, certs.WrongCA)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		t.Parallel()
		raw := matrixProbe(b.raw, dsn, nil)
		var rawCA x509.UnknownAuthorityError
		if !errors.As(raw.err, &rawCA) {
			t.Fatalf("raw %s: %v, want an x509.UnknownAuthorityError", b.raw, raw.err)
		}
		db, err := sql.Open(b.name, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err = Ready(ctx, db)
		took := time.Since(start)
		var ca x509.UnknownAuthorityError
		if !errors.As(err, &ca) {
			t.Errorf("Ready: %v, want an x509.UnknownAuthorityError through errors.As", err)
		}
		if !errors.Is(err, ErrNotReady) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Ready: %v, want ErrNotReady without the context's error", err)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("Ready took %s, want at once (a permanent error)", took)
		}
		err = db.PingContext(ctx)
		if !errors.As(err, &ca) {
			t.Errorf("Ping: %v, want an x509.UnknownAuthorityError through errors.As", err)
		}
		t.Logf("raw %s: %v; pgfast Ready after %s: %v", b.raw, raw.err, took.Round(time.Millisecond), err)
	})
}

// TestMatrixTLSEnv: the TLS settings from libpq's environment (PGSSLMODE,
// PGSSLROOTCERT, PGSSLCERT, PGSSLKEY) with a client certificate, raw vs
// pgfast (not parallel: it sets the environment).
func TestMatrixTLSEnv(t *testing.T) {
	s, certs := startTLSServer(t)
	t.Setenv("PGSSLMODE", "verify-full")
	t.Setenv("PGSSLROOTCERT", certs.CA)
	t.Setenv("PGSSLCERT", certs.ClientCert)
	t.Setenv("PGSSLKEY", certs.ClientKey)
	dsn := fmt.Sprintf("host=localhost port=%d user=%s dbname=%s", s.Port(), certUser, pgtest.Database)
	runMatrix(t, false, []matrixCell{
		{name: "env-client-cert", dsn: fixedDSN(dsn), want: "ok"},
	})
	t.Run("wrong-ca", func(t *testing.T) {
		t.Setenv("PGSSLROOTCERT", certs.WrongCA)
		runMatrix(t, false, []matrixCell{{name: "env-wrong-ca", dsn: fixedDSN(dsn), want: "x509 unknown authority"}})
	})
}
