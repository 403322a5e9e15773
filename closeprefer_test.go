package pgfast

import (
	"database/sql"
	"fmt"
	"testing"
	"time"
)

// TestCloseReturnsWithLibPQPreferStandbyEveryHostDown: lib/pq's
// prefer-standby loop never ends while every host is down and ignores its
// context; Close still returns, and the abandoned loop stops burning a CPU.
func TestCloseReturnsWithLibPQPreferStandbyEveryHostDown(t *testing.T) {
	dsn := fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=x dbname=x sslmode=disable target_session_attrs=prefer-standby",
		freeLoopbackPort(t), freeLoopbackPort(t))
	db, err := sql.Open("pgfast-pq", dsn)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	done := make(chan struct{})
	go func() { db.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30s")
	}
	t.Logf("Close took %s", time.Since(start))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s", took)
	}
	time.Sleep(2 * time.Second) // the dials in flight at Close end
	before, ok := processCPU()
	if !ok {
		t.Skip("no process CPU time")
	}
	time.Sleep(time.Second)
	after, _ := processCPU()
	t.Logf("%s of CPU in the second after Close", after-before)
	if used := after - before; used > 300*time.Millisecond {
		t.Errorf("%s of CPU in the second after Close: an abandoned attempt is spinning", used)
	}
}
