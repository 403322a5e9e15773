package pgfast

import (
	"errors"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

func TestWithoutPgfastKeys(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"host=h port=5432 keepalives_idle=10 user=u", "host=h port=5432 user=u"},
		{"host = h  keepalives = 1 password='a b\\' c' pgfast_min_conns=2 tcp_user_timeout=3000",
			"host = h password='a b\\' c'"},
		{"keepalives_interval=1 keepalives_count=2", ""},
		{"dbname='' keepalives_idle=5 sslmode=disable", "dbname='' sslmode=disable"},
		{"postgres://u:p@h1:5432,h2:5433/db?sslmode=disable&keepalives_idle=10&pgfast_wait_ready=1",
			"postgres://u:p@h1:5432,h2:5433/db?sslmode=disable"},
		{"postgresql://h/db?keepalives=0", "postgresql://h/db"},
		{"postgres://h/db", "postgres://h/db"},
	} {
		got, err := withoutPgfastKeys(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("withoutPgfastKeys(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"host", "host=h x", "password='unterminated"} {
		if _, err := withoutPgfastKeys(bad); err == nil {
			t.Errorf("withoutPgfastKeys(%q): no error", bad)
		}
	}
}

// TestPQListenerThroughPgfast: a LISTEN/NOTIFY round trip through
// NewPQListener with a DSN that carries pgfast's keys; raw pq.NewListener
// with the same DSN is refused by the server (42704, unknown parameter).
func TestPQListenerThroughPgfast(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	dsn := withKV(srv.DSN(pgtest.TrustUser), "keepalives_idle=10", "pgfast_min_conns=1")

	t.Run("raw lib/pq", func(t *testing.T) {
		failed := make(chan error, 10)
		l := pq.NewListener(dsn, 10*time.Millisecond, time.Second, func(ev pq.ListenerEventType, err error) {
			if ev == pq.ListenerEventConnectionAttemptFailed {
				select {
				case failed <- err:
				default:
				}
			}
		})
		defer l.Close()
		select {
		case err := <-failed:
			var pe *pq.Error
			t.Logf("raw lib/pq listener: %v", err)
			if !errors.As(err, &pe) || pe.Code != "42704" {
				t.Errorf("raw lib/pq listener: %v, expected 42704 (the server refusing keepalives_idle)", err)
			}
		case <-time.After(10 * time.Second):
			t.Log("raw lib/pq listener: no failure reported within 10s")
		}
	})

	t.Run("pgfast", func(t *testing.T) {
		l, err := NewPQListener(dsn, 10*time.Millisecond, time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		listened := make(chan error, 1)
		go func() { listened <- l.Listen("pgfast_listener_test") }()
		select {
		case err := <-listened:
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Listen blocked for 10s")
		}
		db := openT(t, pqCase(), dsn)
		readyT(t, db, 10*time.Second)
		if _, err := db.Exec("NOTIFY pgfast_listener_test, 'through pgfast'"); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-l.Notify:
			if n == nil || n.Channel != "pgfast_listener_test" || n.Extra != "through pgfast" {
				t.Errorf("notification %+v", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no notification within 10s")
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	if _, _, err := PQListenerDialer("host=h pgfast_bogus=1"); err == nil {
		t.Error("PQListenerDialer accepted an unknown pgfast key")
	}
}
