package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// preferStandbyDSN is a pgfast-pq DSN over hosts (127.0.0.1 ports) with
// target_session_attrs=prefer-standby.
func preferStandbyDSN(ports ...int) string {
	hosts, ps := "", ""
	for i, p := range ports {
		if i > 0 {
			hosts += ","
			ps += ","
		}
		hosts += "127.0.0.1"
		ps += fmt.Sprint(p)
	}
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable connect_timeout=1 target_session_attrs=prefer-standby",
		hosts, ps, pgtest.TrustUser, pgtest.Database)
}

// TestPQPreferStandbyAllHostsDown: with every host down, lib/pq's own
// prefer-standby loop never ends (a CPU spun from sql.Open on); through
// pgfast-pq a Connect fails within its bound, no CPU is burnt meanwhile, and
// db.Close returns promptly.
func TestPQPreferStandbyAllHostsDown(t *testing.T) {
	leakCheck(t)
	dsn := preferStandbyDSN(freeLoopbackPort(t), freeLoopbackPort(t))
	c, err := NewConnector(dsn, WithBackend(LibPQ))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.backend.Connect(ctx) // lib/pq's connect, as the probe makes it
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("Connect with every host down: %v after %v", err, time.Since(start).Round(time.Millisecond))
		if err == nil {
			t.Fatal("Connect succeeded with every host down")
		}
		// 2 passes x 2 hosts x connect_timeout=1s, with a margin.
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("Connect took %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not return within 10s (lib/pq's prefer-standby loop?)")
	}
	time.Sleep(time.Second) // the background probe keeps trying meanwhile
	if cpu1, ok := processCPU(); cpuOK && ok {
		used := cpu1 - cpu0
		wall := time.Since(start)
		t.Logf("CPU used: %v in %v", used.Round(time.Millisecond), wall.Round(time.Millisecond))
		if used > wall/2 {
			t.Errorf("%v of CPU in %v: a spin", used, wall)
		}
	}
	closeStart := time.Now()
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(closeStart); d > 2*time.Second {
		t.Errorf("db.Close took %v", d)
	}
}

// TestPQPreferStandby: prefer-standby connects to a standby when one is up,
// whatever the host order, and to the primary when it is the only one up.
func TestPQPreferStandby(t *testing.T) {
	primary := newServer(t, pgtest.Options{})
	if err := primary.Start(); err != nil {
		t.Fatalf("primary: %v", err)
	}
	standby, err := primary.StartStandby(pgtest.Options{})
	if err != nil {
		t.Fatalf("standby: %v", err)
	}
	t.Cleanup(standby.Cleanup)
	leakCheck(t)
	inRecovery := func(t *testing.T, dsn string) bool {
		t.Helper()
		db := openT(t, pqCase(), dsn)
		readyT(t, db, 20*time.Second)
		var r bool
		if err := db.QueryRow("SELECT pg_is_in_recovery()").Scan(&r); err != nil {
			t.Fatal(err)
		}
		db.Close()
		return r
	}
	t.Run("primary first, standby up", func(t *testing.T) {
		if !inRecovery(t, preferStandbyDSN(primary.Port(), standby.Port())) {
			t.Error("connected to the primary although a standby was up")
		}
	})
	t.Run("only the primary up", func(t *testing.T) {
		if inRecovery(t, preferStandbyDSN(freeLoopbackPort(t), primary.Port())) {
			t.Error("connected to a standby?")
		}
	})
}
