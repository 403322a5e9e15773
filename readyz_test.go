package pgfast

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// getReadiness asks h once and decodes its answer.
func getReadiness(t *testing.T, h http.Handler) (int, http.Header, readyzBody, string) {
	t.Helper()
	hs := httptest.NewServer(h)
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r readyzBody
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("body does not parse: %v\n%s", err, body)
	}
	return resp.StatusCode, resp.Header, r, string(body)
}

// waitForState waits, bounded, until db's connector is in state want.
func waitForState(t *testing.T, db *sql.DB, want State) {
	t.Helper()
	c := ConnectorOf(db)
	deadline := time.Now().Add(15 * time.Second)
	for c.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %s, want %s", c.State(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadyHandlerReady(t *testing.T) {
	s := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db, err := sql.Open(b.name, s.DSN(pgtest.TrustUser))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := Ready(ctx, db); err != nil {
			t.Fatal(err)
		}
		code, hdr, r, body := getReadiness(t, ReadyHandler(db))
		if code != http.StatusOK || !r.Ready || r.State != "ready" || r.LastError != "" || r.Since.IsZero() {
			t.Fatalf("status %d, body %s", code, body)
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		want := fmt.Sprintf("127.0.0.1:%d", s.Port())
		if len(r.Addrs) != 1 || r.Addrs[0].Addr != want || r.Addrs[0].Status != "up" || r.Addrs[0].OpenConns < 1 {
			t.Errorf("addrs %+v, want %s up with a connection", r.Addrs, want)
		}
	})
}

func TestReadyHandlerDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		port := freeLoopbackPort(t)
		db, err := sql.Open(b.name, fmt.Sprintf("host=127.0.0.1 port=%d user=app password=Sekr1t-readyz sslmode=disable", port))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		waitForState(t, db, StateDown)
		start := time.Now()
		code, hdr, r, body := getReadiness(t, ReadyHandler(db))
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %s: the handler must not wait for the database", took)
		}
		if code != http.StatusServiceUnavailable || r.Ready || r.State != "down" || !strings.Contains(r.LastError, "refused") {
			t.Fatalf("status %d, want 503 down with a refused connection: %s", code, body)
		}
		if hdr.Get("Retry-After") == "" {
			t.Error("no Retry-After on 503")
		}
		if len(r.Addrs) != 1 || r.Addrs[0].Status != "failed" && r.Addrs[0].Status != "evicted" {
			t.Errorf("addrs %+v, want the one address failed", r.Addrs)
		}
		if strings.Contains(body, "Sekr1t-readyz") {
			t.Errorf("the body contains the password: %s", body)
		}
	})
}

// TestReadyHandlerWrongPassword: an authentication failure is reported
// without the password.
func TestReadyHandlerWrongPassword(t *testing.T) {
	s := server(t)
	const wrong = "Wr0ng-readyz-Pw"
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db, err := sql.Open(b.name, strings.Replace(s.DSN(pgtest.ScramUser), pgtest.ScramPassword, wrong, 1))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		waitForState(t, db, StateDown)
		code, _, r, body := getReadiness(t, ReadyHandler(db))
		if code != http.StatusServiceUnavailable || r.State != "down" || !strings.Contains(r.LastError, "28P01") {
			t.Errorf("status %d, want 503 down with SQLSTATE 28P01: %s", code, body)
		}
		if strings.Contains(body, wrong) || strings.Contains(body, pgtest.ScramPassword) {
			t.Errorf("the body contains the password: %s", body)
		}
	})
}

func TestReadyHandlerClosedAndForeign(t *testing.T) {
	db, err := sql.Open("pgfast", fmt.Sprintf("host=127.0.0.1 port=%d user=app sslmode=disable", freeLoopbackPort(t)))
	if err != nil {
		t.Fatal(err)
	}
	h := ReadyHandler(db)
	db.Close()
	if code, _, r, body := getReadiness(t, h); code != http.StatusServiceUnavailable || r.State != "closed" {
		t.Errorf("closed: status %d, body %s", code, body)
	}
	raw, err := sql.Open("pgx", "host=127.0.0.1 user=app") // not pgfast; opening does no I/O
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if code, _, r, body := getReadiness(t, ReadyHandler(raw)); code != http.StatusServiceUnavailable || r.State != "unknown" || r.Addrs == nil {
		t.Errorf("foreign *sql.DB: status %d, body %s", code, body)
	}
}
