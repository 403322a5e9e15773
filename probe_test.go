package pgfast

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

func TestProbeServer(t *testing.T) {
	srv := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stages []diag.Stage
	rep, err := diag.Probe(ctx, srv.DSN(pgtest.TrustUser), func(e diag.Event) {
		stages = append(stages, e.Stage)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Usable() || rep.Pick == nil || *rep.Pick != (diag.Pick{Host: 0, Addr: 0}) {
		t.Fatalf("not usable: %+v", rep)
	}
	if len(rep.Hosts) != 1 || len(rep.Hosts[0].Addrs) != 1 {
		t.Fatalf("hosts: %+v", rep.Hosts)
	}
	a := rep.Picked()
	if a.Dial != diag.DialConnected || !a.Authenticated || a.Err() != nil {
		t.Errorf("address: %+v", a)
	}
	if !strings.HasPrefix(a.ServerVersion, "1") || a.Role() != "primary" || a.ReadOnly {
		t.Errorf("version %q role %q read-only %v", a.ServerVersion, a.Role(), a.ReadOnly)
	}
	want := diag.SocketOptions{Keepalive: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3} // TCP_USER_TIMEOUT not set by default
	if a.Socket == nil || *a.Socket != want {
		t.Errorf("socket options %+v (err %v), want %+v", a.Socket, a.SocketErr, want)
	}
	if a.TLS != "" || a.TLSFallback {
		t.Errorf("TLS %q fallback %v with sslmode=disable", a.TLS, a.TLSFallback)
	}
	if rep.User != pgtest.TrustUser || rep.Database != pgtest.Database {
		t.Errorf("user %q database %q", rep.User, rep.Database)
	}
	wantStages := []diag.Stage{diag.Resolving, diag.Dialing, diag.Startup, diag.Querying, diag.AddrDone}
	if fmt.Sprint(stages) != fmt.Sprint(wantStages) {
		t.Errorf("stages %v, want %v", stages, wantStages)
	}
}

func TestProbeTLSFallback(t *testing.T) {
	srv := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dsn := strings.Replace(srv.DSN(pgtest.TrustUser), "sslmode=disable", "sslmode=prefer", 1)
	rep, err := diag.Probe(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 1 || len(rep.Hosts[0].Addrs) != 1 {
		t.Fatalf("sslmode=prefer: hosts %+v, want one host with one address", rep.Hosts)
	}
	a := rep.Hosts[0].Addrs[0]
	if !a.Authenticated || a.TLS != "" || !a.TLSFallback {
		t.Errorf("sslmode=prefer against a server without TLS: %+v", a)
	}
}

func TestProbeRefused(t *testing.T) {
	port := freeLoopbackPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := diag.Probe(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=prefer connect_timeout=2", port), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Usable() {
		t.Fatal("usable")
	}
	a := rep.Hosts[0].Addrs[0]
	if a.Dial != diag.DialRefused || a.DialErr == nil || a.Authenticated {
		t.Errorf("address: %+v", a)
	}
}

func TestProbeWrongPasswordRedacted(t *testing.T) {
	srv := server(t)
	const secret = "wr0ng-Secret-4711"
	dsn := strings.Replace(srv.DSN(pgtest.ScramUser), pgtest.ScramPassword, secret, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := diag.Probe(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Hosts[0].Addrs[0]
	var pgErr *pgconn.PgError
	if a.Dial != diag.DialConnected || a.Authenticated || !errors.As(a.StartupErr, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: %+v", a)
	}
	if rep.Usable() {
		t.Error("usable with a wrong password")
	}
	if s := fmt.Sprintf("%+v %v", rep, a.StartupErr); strings.Contains(s, secret) {
		t.Errorf("report quotes the password: %s", s)
	}
}

func TestProbeTargetSessionAttrs(t *testing.T) {
	srv := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for attrs, usable := range map[string]bool{"standby": false, "read-only": false, "primary": true, "read-write": true, "prefer-standby": true} {
		rep, err := diag.Probe(ctx, srv.DSN(pgtest.TrustUser)+" target_session_attrs="+attrs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Usable() != usable || rep.Config.(Config).TargetSessionAttrs != attrs {
			t.Errorf("%s against a primary: usable %v (attrs %q), want %v", attrs, rep.Usable(), rep.Config.(Config).TargetSessionAttrs, usable)
		}
	}
}

func TestProbeBadDSN(t *testing.T) {
	const secret = "hunter2-Secret"
	for _, dsn := range []string{
		"host=127.0.0.1 password=" + secret + " keepalives_idle=soon",
		"postgres://u:" + secret + "@127.0.0.1:notaport/db",
		"host=127.0.0.1 password=" + secret + " pgfast_typo=1",
	} {
		rep, err := diag.Probe(context.Background(), dsn, nil)
		var ce *ConfigError
		if !errors.As(err, &ce) || rep != nil {
			t.Errorf("%q: %v, %v; want a *ConfigError", dsn, rep, err)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes the password: %v", err)
		}
	}
}

func TestProbeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	rep, err := diag.Probe(ctx, "host=127.0.0.1 port=1 user=x", nil)
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Errorf("cancelled: %v, %v", rep, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func TestInspectDSN(t *testing.T) {
	dsn := "host=127.0.0.1 user=u dbname=d keepalives_idle=10 keepalives_interval=5 tcp_user_timeout=16000 connect_timeout=3"
	for _, b := range []Backend{PGX, LibPQ} {
		info, err := diag.InspectDSN(dsn, b)
		if err != nil {
			t.Fatalf("%v: %v", b, err)
		}
		if info.RawConnectTimeout != 3*time.Second || info.User != "u" || info.Database != "d" {
			t.Errorf("%v: %+v", b, info)
		}
		want := map[string]string{"keepalives_idle": "10", "keepalives_interval": "5", "tcp_user_timeout": "16000"}
		if fmt.Sprint(info.Forwarded) != fmt.Sprint(want) {
			t.Errorf("%v: forwarded %v, want %v", b, info.Forwarded, want)
		}
		c := info.Config.(Config)
		if c.KeepalivesIdle != 10*time.Second || c.KeepalivesCount != DefaultKeepalivesCount || c.TCPUserTimeout != 16*time.Second || c.ConnectTimeout != 3*time.Second {
			t.Errorf("%v: config %+v", b, c)
		}
	}
	info, err := diag.InspectDSN("host=127.0.0.1 user=u", PGX)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config.(Config)
	if cfg.ConnectTimeout != DefaultConnectTimeout || cfg.TCPUserTimeout != DefaultTCPUserTimeout || !cfg.Keepalives {
		t.Errorf("defaults: %+v", cfg)
	}
	if info.RawConnectTimeout != 0 || len(info.Forwarded) != 0 {
		t.Errorf("no connect_timeout: %+v", info)
	}
	var ce *ConfigError
	if _, err := diag.InspectDSN("host=127.0.0.1 tcp_user_timeout=-1", LibPQ); !errors.As(err, &ce) {
		t.Errorf("bad tcp_user_timeout: %v", err)
	}
}

func TestProbePick(t *testing.T) {
	primary := diag.AddrReport{Authenticated: true, RoleKnown: true}
	readOnly := diag.AddrReport{Authenticated: true, RoleKnown: true, ReadOnly: true}
	standby := diag.AddrReport{Authenticated: true, RoleKnown: true, Standby: true}
	down := diag.AddrReport{Dial: diag.DialRefused}
	unknown := diag.AddrReport{Authenticated: true}
	hosts := []diag.HostReport{
		{Addrs: []diag.AddrReport{down, unknown}},
		{Addrs: []diag.AddrReport{readOnly}},
		{Addrs: []diag.AddrReport{standby, primary}},
	}
	for attrs, want := range map[string]*diag.Pick{
		"any":            {Host: 0, Addr: 1},
		"read-write":     {Host: 2, Addr: 1},
		"read-only":      {Host: 1, Addr: 0},
		"primary":        {Host: 1, Addr: 0},
		"standby":        {Host: 2, Addr: 0},
		"prefer-standby": {Host: 2, Addr: 0},
	} {
		if got := probePick(hosts, attrs); got == nil || *got != *want {
			t.Errorf("%s: %v, want %v", attrs, got, want)
		}
	}
	if got := probePick(hosts[:2], "standby"); got != nil {
		t.Errorf("standby without one: %v", got)
	}
	if got := probePick(hosts[:2], "prefer-standby"); got == nil || *got != (diag.Pick{Host: 0, Addr: 1}) {
		t.Errorf("prefer-standby without one: %v", got)
	}
}

func TestProbeDialOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want diag.DialOutcome
	}{
		{nil, diag.DialConnected},
		{context.Canceled, diag.DialCancelled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), diag.DialTimedOut},
		{netx.AttemptTimeout(time.Second), diag.DialTimedOut},
		{errors.New("something"), diag.DialFailed},
	} {
		if got := dialOutcomeOf(tc.err); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestProbeHostsUnixAndHostaddr(t *testing.T) {
	srv := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	down := freeLoopbackPort(t)
	dsn := fmt.Sprintf("host=127.0.0.1,db.invalid,%s port=%d,%d,%d hostaddr=,127.0.0.1, user=%s dbname=%s sslmode=disable",
		srv.SocketDir(), down, srv.Port(), srv.Port(), pgtest.TrustUser, pgtest.Database)
	rep, err := diag.Probe(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 3 {
		t.Fatalf("hosts: %+v", rep.Hosts)
	}
	if a := rep.Hosts[0].Addrs; len(a) != 1 || a[0].Dial != diag.DialRefused {
		t.Errorf("down host: %+v", a)
	}
	if h := rep.Hosts[1]; h.HostAddr != "127.0.0.1" || len(h.Addrs) != 1 || !h.Addrs[0].Authenticated {
		t.Errorf("hostaddr host: %+v", h)
	}
	if a := rep.Hosts[2].Addrs; len(a) != 1 || a[0].Network != "unix" || !a[0].Authenticated || a[0].Socket != nil || a[0].Role() != "primary" {
		t.Errorf("unix socket host: %+v", a)
	}
	if rep.Pick == nil || *rep.Pick != (diag.Pick{Host: 1, Addr: 0}) {
		t.Errorf("pick %+v, want the second host", rep.Pick)
	}
}
