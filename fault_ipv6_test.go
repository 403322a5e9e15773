package pgfast

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netfault"
)

// ---- scenarios ----

// faultIPv6BlackholeIPv4Up: ::1 silently drops everything, 127.0.0.1 serves.
// pgfast races the addresses; the raw pgx tries ::1 until the kernel gives up
// on the SYN (~130 s).
func faultIPv6BlackholeIPv4Up(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	dsn := faultDSN(port)
	e.drop(netfault.Rule{Addr: "::1", Port: port, Direction: "both"})

	raw := e.openRaw(b, dsn)
	rawStart := time.Now()
	rawCh := e.async(func() error {
		ctx, cancel := context.WithTimeout(e.ctx, faultRawCapShort+time.Second)
		defer cancel()
		return raw.db.Ping(ctx)
	})

	start := time.Now()
	db, c, openTook := e.open(b, dsn)
	if openTook > faultOpenBound {
		t.Errorf("opening took %v, want it to return at once", openTook)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	readyTook := time.Since(start)
	var one int
	if err := db.QueryRowScan(ctx, "SELECT 1", nil, &one); err != nil {
		t.Fatalf("first query: %v", err)
	}
	firstQuery := time.Since(start)
	if readyTook > time.Second {
		t.Errorf("Ready took %v, want < 1s", readyTook)
	}
	if firstQuery > time.Second {
		t.Errorf("opening + first query took %v, want < 1s", firstQuery)
	}
	if got, want := faultRemoteAddr(t, db), fmt.Sprintf("127.0.0.1:%d", port); got != want {
		t.Errorf("pooled connection goes to %s, want %s (::1 is blackholed)", got, want)
	}
	t.Logf("pgfast: open %v, Ready %v, first query done %v after opening", openTook, faultDur(readyTook), faultDur(firstQuery))
	faultMeasure(t, "ipv6-blackhole-ipv4-up", b, firstQuery, faultRawOutcome(rawCh, rawStart, faultRawCapShort))
}

// faultIPv6BlackholeIPv4Refused: the server is down; ::1 silently drops, IPv4
// refuses. pgfast answers within the caller's context, naming both
// addresses, and becomes ready soon after the server starts.
func faultIPv6BlackholeIPv4Refused(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, false)
	port := srv.Port()
	dsn := faultDSN(port)
	e.drop(netfault.Rule{Addr: "::1", Port: port, Direction: "both"})

	db, c, openTook := e.open(b, dsn)
	if openTook > faultOpenBound {
		t.Errorf("opening took %v, want it to return at once", openTook)
	}

	// Ready with a 1 s context: an error by ~1 s naming both addresses.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	start := time.Now()
	err := c.Ready(ctx)
	took := time.Since(start)
	cancel()
	t.Logf("Ready(1s) after %v: %v", faultDur(took), err)
	if took > 1500*time.Millisecond {
		t.Errorf("Ready with a 1s context returned after %v, want by 1.5s", took)
	}
	if !errors.Is(err, ErrNotReady) {
		t.Errorf("Ready: got %v, want ErrNotReady", err)
	}
	if err != nil {
		var missing []string
		for _, addr := range []string{fmt.Sprintf("[::1]:%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
			if !strings.Contains(err.Error(), addr) {
				missing = append(missing, addr)
			}
		}
		if len(missing) > 0 {
			t.Errorf("Ready's error does not name %s (want both the blackholed [::1]:%d, still pending, and the refusing 127.0.0.1:%d): %q",
				strings.Join(missing, " and "), port, port, err)
		}
	}

	// Cancelling Ready's context returns at once.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	readyCh := e.async(func() error { return c.Ready(ctx) })
	time.Sleep(100 * time.Millisecond)
	cancelled := time.Now()
	cancel()
	r, ok := faultWait(readyCh, cancelled.Add(5*time.Second))
	switch {
	case !ok:
		t.Fatal("Ready did not return within 5s of its context's cancellation")
	case r.end.Sub(cancelled) > 50*time.Millisecond:
		t.Errorf("Ready returned %v after its context was cancelled, want within 50ms", r.end.Sub(cancelled))
	case !errors.Is(r.err, context.Canceled):
		t.Errorf("Ready after cancel: got %v, want context.Canceled", r.err)
	}

	// The server comes up (::1 still blackholed): ready within seconds.
	if err := srv.Start(); err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	started := time.Now()
	raw := e.openRaw(b, dsn)
	rawCh := e.async(func() error {
		ctx, cancel := context.WithTimeout(e.ctx, faultRawCapShort+time.Second)
		defer cancel()
		return raw.db.Ping(ctx)
	})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready after the server started: %v", err)
	}
	readyTook := time.Since(started)
	if readyTook > 5*time.Second {
		t.Errorf("ready %v after the server started, want within 5s", readyTook)
	}
	var one int
	if err := db.QueryRowScan(ctx, "SELECT 1", nil, &one); err != nil {
		t.Fatalf("query after the server started: %v", err)
	}
	t.Logf("pgfast ready %v after the server started (pgfast= below; raw= is a fresh raw pool's first Ping after the start)", faultDur(readyTook))
	faultMeasure(t, "ipv6-blackhole-ipv4-refused", b, readyTook, faultRawOutcome(rawCh, started, faultRawCapShort))
}
