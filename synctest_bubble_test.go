package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// A pool or connector built, used and closed inside a testing/synctest
// bubble must leave nothing of pgfast's (or of the net package's, through
// pgfast's lookups) bound to that bubble: the tests that run after it in the
// same binary use pgfast outside any bubble. A channel used across a bubble's
// boundary is a fatal runtime error ("receive on synctest channel from
// outside bubble") that kills the whole test binary, so each scenario runs in
// a child process of its own: a fresh process, whose first name lookup is
// the one inside the bubble, and whose crash fails this test only.

// envBubbleChild names the scenario a child process runs, envBubbleDSN its
// server.
const (
	envBubbleChild = "PGFAST_TEST_BUBBLE_CHILD"
	envBubbleDSN   = "PGFAST_TEST_BUBBLE_DSN"
)

// bubbleScenarios are the front ends built inside the bubble: each opens,
// queries once and closes.
var bubbleScenarios = map[string]func(t *testing.T, dsn string){
	"pool":          bubblePool,
	"connector-pgx": func(t *testing.T, dsn string) { bubbleDB(t, dsn, PGX) },
	"connector-pq":  func(t *testing.T, dsn string) { bubbleDB(t, dsn, LibPQ) },
	"pool-refused":  bubblePoolRefused,
}

// TestPoolAndConnectorAfterSynctestBubble: after a pgfast pool or connector
// was built, used and closed in a synctest bubble, pgfast works outside it in
// the same process (a pool and both connectors), and so does the net
// package's resolver. The host is "localhost" (the bubble's lookup is the
// process's first), with Go's resolver and with libc's (GODEBUG=netdns),
// and 127.0.0.1 (no lookup: the dead-peer watcher alone).
func TestPoolAndConnectorAfterSynctestBubble(t *testing.T) {
	if name := os.Getenv(envBubbleChild); name != "" {
		bubbleChild(t, name, os.Getenv(envBubbleDSN))
		return
	}
	srv := server(t)
	for _, v := range []struct{ host, netdns string }{
		{"localhost", "go"}, {"localhost", "cgo"}, {"127.0.0.1", ""},
	} {
		dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=10",
			v.host, srv.Port(), pgtest.TrustUser, pgtest.Database)
		for _, name := range []string{"pool", "connector-pgx", "connector-pq", "pool-refused"} {
			t.Run(name+"/"+v.host+"/"+v.netdns, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0],
					"-test.run=^TestPoolAndConnectorAfterSynctestBubble$", "-test.count=1", "-test.v", "-test.timeout=80s")
				cmd.Env = append(os.Environ(), envBubbleChild+"="+name, envBubbleDSN+"="+dsn,
					// no race detector's 1 s pause at exit
					"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
				if v.netdns != "" {
					cmd.Env = append(cmd.Env, "GODEBUG=netdns="+v.netdns)
				}
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "bubble child: all done") {
					t.Fatalf("child process: %v\n%s", err, tail(string(out), 60))
				}
			})
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// bubbleChild runs one scenario inside a bubble, then pgfast (a pool and a
// connector per backend) and a name lookup outside it.
func bubbleChild(t *testing.T, name, dsn string) {
	run := bubbleScenarios[name]
	if run == nil || dsn == "" {
		t.Fatalf("bad child scenario %q (dsn %q)", name, dsn)
	}
	synctest.Test(t, func(t *testing.T) { run(t, dsn) })
	if t.Failed() {
		return
	}
	t.Log("bubble closed; now outside it")
	collectBubblePools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, "localhost"); err != nil {
		t.Fatalf("lookup of localhost outside the bubble: %v", err)
	}
	bubblePool(t, dsn)
	bubbleDB(t, dsn, PGX)
	bubbleDB(t, dsn, LibPQ)
	if !t.Failed() {
		fmt.Println("bubble child: all done")
	}
}

// bubblePool makes a pgfast pool, waits until it is Ready, queries once and
// closes it.
func bubblePool(t *testing.T, dsn string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := NewPool(ctx, dsn)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	defer p.Close()
	if err := PoolConnector(p).Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	var one int
	if err := p.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 on the pool: %d, %v", one, err)
	}
}

// bubblePoolRefused makes a pool whose every login fails in the caller's
// BeforeConnect and closes it before it ever held a connection, so no
// connection's close tells its connector the pool is gone (pgxpool's own
// synctest tests do this); the pool is left to the garbage collector.
func bubblePoolRefused(t *testing.T, dsn string) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pc.BeforeConnect = func(context.Context, *pgx.ConnConfig) error { return errors.New("refused by the test") }
	p, err := NewPoolWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatalf("NewPoolWithConfig: %v", err)
	}
	synctest.Wait()
	p.Close()
}

// collectBubblePools collects the pools the bubble left (bounded) and gives
// their cleanups time to run: a cleanup runs outside the bubble, where
// closing a bubble's channel kills the process.
func collectBubblePools(t *testing.T) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		poolRegistry.mu.Lock()
		n := len(poolRegistry.m)
		poolRegistry.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("%d pools of the bubble still registered after 5 s of collections", n)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a cleanup's goroutine runs now
}

// bubbleDB opens a *sql.DB on a pgfast connector of backend b, waits until it
// is Ready, queries once and closes it.
func bubbleDB(t *testing.T, dsn string, b Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := NewConnector(dsn, WithBackend(b))
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	if err := Ready(ctx, db); err != nil {
		t.Fatalf("Ready (%v): %v", b, err)
	}
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 (%v): %d, %v", b, one, err)
	}
}
