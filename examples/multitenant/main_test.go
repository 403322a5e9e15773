package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// startServer starts a throwaway PostgreSQL, skipping the test when none is
// installed (failing instead under PGFAST_REQUIRE_DB=1, as ./scripts/test sets).
func startServer(t *testing.T) *pgtest.Server {
	t.Helper()
	srv, err := pgtest.New(pgtest.Options{})
	if errors.Is(err, pgtest.ErrNoPostgres) {
		if os.Getenv("PGFAST_REQUIRE_DB") == "1" {
			t.Fatalf("%v (and PGFAST_REQUIRE_DB=1)", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Cleanup)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// freePort returns a loopback port where nothing listens: connecting to it
// is refused at once.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get fetches url and returns the status, the body and how long it took.
func get(t *testing.T, url string) (int, []byte, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, time.Since(start)
}

// waitState waits, bounded, until tenant t is in state want.
func waitState(t *testing.T, tn *Tenant, want pgfast.State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tn.Connector.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s: state %s, want %s", tn.ID, tn.Connector.State(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTenants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend pgfast.Backend
	}{{"pgfast", pgfast.PGX}, {"pgfast-pq", pgfast.LibPQ}} {
		t.Run(tc.name, func(t *testing.T) { testTenants(t, tc.backend) })
	}
}

func testTenants(t *testing.T, backend pgfast.Backend) {
	srv := startServer(t)
	specs := []TenantSpec{
		{ID: "a", DSN: srv.DSN(pgtest.TrustUser)},
		{ID: "b", DSN: fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=app sslmode=disable", freePort(t))},
		{ID: "c", DSN: fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=app sslmode=disable connect_timeout=30", freePort(t))},
	}

	start := time.Now()
	ts, err := OpenTenants(specs, Options{Backend: backend})
	opened := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			ts.Close()
		}
	}()
	hs := httptest.NewServer(Handler(ts, 2*time.Second))
	defer hs.Close()
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("starting the server with a tenant down took %s, want < 50ms (opening the tenants: %s)", took, opened)
	}

	a, b, c := ts.Get("a"), ts.Get("b"), ts.Get("c")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pgfast.Ready(ctx, a.DB); err != nil {
		t.Fatalf("tenant a: %v", err)
	}
	waitState(t, b, pgfast.StateDown)
	waitState(t, c, pgfast.StateDown)

	t.Run("tenant a ready", func(t *testing.T) {
		code, body, _ := get(t, hs.URL+"/tenants/a/readyz")
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", code, body)
		}
		var st TenantStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.ID != "a" || st.State != "ready" || !st.Ready || st.LastError != "" || len(st.Addrs) != 1 || st.Addrs[0].Status != "up" {
			t.Errorf("body %+v", st)
		}
	})

	t.Run("tenant b down answers at once", func(t *testing.T) {
		code, body, took := get(t, hs.URL+"/tenants/b/readyz")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503: %s", code, body)
		}
		if took > 50*time.Millisecond {
			t.Errorf("took %s, want < 50ms", took)
		}
		var st TenantStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != "down" || st.Ready || !strings.Contains(st.LastError, "refused") {
			t.Errorf("body %+v, want down with a refused connection as its last error", st)
		}
	})

	t.Run("the process is ready whatever one tenant's state", func(t *testing.T) {
		code, body, took := get(t, hs.URL+"/readyz")
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200 (tenants b and c are down, the process serves): %s", code, body)
		}
		if took > 50*time.Millisecond {
			t.Errorf("took %s, want < 50ms", took)
		}
		var all ProcessStatus
		if err := json.Unmarshal(body, &all); err != nil {
			t.Fatal(err)
		}
		if !all.Ready || len(all.Tenants) != 3 {
			t.Fatalf("body %s", body)
		}
		for id, want := range map[string]string{"a": "ready", "b": "down", "c": "down"} {
			if got := all.Tenants[id]; got != want {
				t.Errorf("tenant %s: state %q, want %q", id, got, want)
			}
		}
	})

	t.Run("query on a while b is down", func(t *testing.T) {
		code, body, _ := get(t, hs.URL+"/tenants/a/query")
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", code, body)
		}
		var res struct {
			Tenant string    `json:"tenant"`
			Now    time.Time `json:"now"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		if res.Tenant != "a" || time.Since(res.Now).Abs() > time.Minute {
			t.Errorf("body %s", body)
		}
	})

	t.Run("query on a tenant that is down fails fast", func(t *testing.T) {
		for _, id := range []string{"b", "c"} {
			code, body, took := get(t, hs.URL+"/tenants/"+id+"/query")
			if code != http.StatusServiceUnavailable {
				t.Fatalf("tenant %s: status %d, want 503: %s", id, code, body)
			}
			if took > 50*time.Millisecond {
				t.Errorf("tenant %s: took %s, want < 50ms", id, took)
			}
			if !strings.Contains(string(body), "not ready") {
				t.Errorf("tenant %s: body %s, want pgfast's not-ready error", id, body)
			}
		}
	})

	t.Run("unknown tenant", func(t *testing.T) {
		if code, body, _ := get(t, hs.URL+"/tenants/zz/readyz"); code != http.StatusNotFound {
			t.Errorf("status %d, want 404: %s", code, body)
		}
	})

	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	t.Run("not ready once shutting down", func(t *testing.T) {
		code, body, _ := get(t, hs.URL+"/readyz")
		var all ProcessStatus
		if err := json.Unmarshal(body, &all); err != nil {
			t.Fatal(err)
		}
		if code != http.StatusServiceUnavailable || all.Ready || all.Reason == "" || all.Tenants["a"] != "closed" {
			t.Errorf("status %d, want 503 with a reason: %s", code, body)
		}
	})
	hs.Close()
	for _, tn := range ts.All() {
		if st := tn.Connector.State(); st != pgfast.StateClosed {
			t.Errorf("tenant %s: state %s after Close, want closed", tn.ID, st)
		}
	}
}

func TestParseSpecs(t *testing.T) {
	in := `# tenants
a = host=127.0.0.1 dbname=a

b=postgres://app:secret@db-b/app?sslmode=disable
`
	specs, err := ParseSpecs(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []TenantSpec{
		{ID: "a", DSN: "host=127.0.0.1 dbname=a"},
		{ID: "b", DSN: "postgres://app:secret@db-b/app?sslmode=disable"},
	}
	if fmt.Sprint(specs) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", specs, want)
	}
	for _, bad := range []string{"nodsn", "a=", "=dsn", "a/b=dsn", "a b=dsn"} {
		if _, err := ParseSpecs(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestOpenTenantsConfigErrors(t *testing.T) {
	// A duplicate id and a bad DSN are reported at once, naming the tenant,
	// and never show the password.
	_, err := OpenTenants([]TenantSpec{{ID: "a", DSN: "host=127.0.0.1"}, {ID: "a", DSN: "host=127.0.0.1"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("duplicate id: %v", err)
	}
	_, err = OpenTenants([]TenantSpec{{ID: "x", DSN: "host=127.0.0.1 password=hunter2 keepalives=maybe"}}, Options{})
	var ce *pgfast.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `"x"`) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad DSN: %v", err)
	}
}
