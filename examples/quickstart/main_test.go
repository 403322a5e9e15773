package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickstart runs the quickstart as a user does, with nothing
// configured (a throwaway server), on both drivers, and checks that it
// succeeds, cleans up, and prints its lines in the order things happen.
func TestQuickstart(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "quickstart")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, driver := range []string{"pgfast", "pgfast-pq"} {
		t.Run(driver, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, bin, "-driver", driver)
			cmd.Env = append(os.Environ(), "DATABASE_URL=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			out := stdout.String()
			if err != nil && strings.Contains(stderr.String(), "PostgreSQL") && strings.Contains(stderr.String(), "install") &&
				os.Getenv("PGFAST_REQUIRE_DB") != "1" {
				t.Skip(stderr.String())
			}
			if err != nil {
				t.Fatalf("%v\n--- stdout:\n%s--- stderr:\n%s", err, out, stderr.String())
			}
			inOrder(t, out,
				"not started yet",
				"  [state] down: ",
				"Ready with a 300ms deadline while the server is down:",
				"errors.Is(err, pgfast.ErrNotReady) = true",
				"starting the server…",
				"ready after ",
				"stats: dials=",
				"  [state] closed",
				"throwaway server stopped and removed",
			)
			// The state hook runs on a goroutine of its own: its "ready"
			// line may follow "ready after".
			inOrder(t, out, "starting the server…", "  [state] ready\n", "  [state] closed")
			// "server started" comes after "starting the server…"; whether
			// the connector noticed before pg_ctl returned is a race.
			inOrder(t, out, "starting the server…", "server started (pg_ctl start took")
			if strings.Contains(out, "password") {
				t.Errorf("output mentions a password:\n%s", out)
			}
			t.Logf("\n%s", out)
		})
	}
}

// inOrder checks that each of want occurs in out after the previous one.
func inOrder(t *testing.T, out string, want ...string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%q missing or out of order in:\n%s", w, out)
			return
		}
		rest = rest[i+len(w):]
	}
}
