package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

func assertInterrupted(t *testing.T, pc *PQConn, want bool) {
	t.Helper()
	err := pc.ResetSession(context.Background())
	if got := errors.Is(err, driver.ErrBadConn); got != want {
		t.Errorf("ResetSession = %v, want ErrBadConn: %v", err, want)
	}
	if pc.IsValid() == want {
		t.Errorf("IsValid = %v, want %v", pc.IsValid(), !want)
	}
}

// eachBlockingCall is every PQConn entry point that can block on the socket,
// run with ctx and a query that blocks.
var eachBlockingCall = []struct {
	name string
	call func(ctx context.Context, pc *PQConn) error
}{
	{"ExecContext", func(ctx context.Context, pc *PQConn) error {
		_, err := pc.ExecContext(ctx, "block", nil)
		return err
	}},
	{"QueryContext", func(ctx context.Context, pc *PQConn) error {
		_, err := pc.QueryContext(ctx, "block", nil)
		return err
	}},
	{"rows.Next", func(ctx context.Context, pc *PQConn) error {
		rows, err := pc.QueryContext(ctx, "blockrows", nil)
		if err != nil {
			return err
		}
		defer rows.Close()
		return rows.Next(make([]driver.Value, 1))
	}},
	{"StmtExecContext", func(ctx context.Context, pc *PQConn) error {
		st, err := pc.PrepareContext(context.Background(), "block")
		if err != nil {
			return err
		}
		_, err = st.(driver.StmtExecContext).ExecContext(ctx, nil)
		return err
	}},
	{"StmtQueryContext", func(ctx context.Context, pc *PQConn) error {
		st, err := pc.PrepareContext(context.Background(), "block")
		if err != nil {
			return err
		}
		_, err = st.(driver.StmtQueryContext).QueryContext(ctx, nil)
		return err
	}},
	{"tx with Background call", func(ctx context.Context, pc *PQConn) error {
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		_, err = pc.ExecContext(context.Background(), "block", nil)
		return err
	}},
}

func TestPQWatchInterruptsBlockedCall(t *testing.T) {
	leakCheck(t)
	for _, tc := range eachBlockingCall {
		t.Run(tc.name, func(t *testing.T) {
			// The 100ms context runs on the bubble's fake clock.
			synctest.Test(t, func(t *testing.T) {
				rec := &errRecorder{}
				pc, pb := newPipeConn(t, &fakeCore{onErrorFn: rec.onError})
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				start := time.Now()
				err := tc.call(ctx, pc)
				elapsed := time.Since(start)
				if elapsed > time.Second {
					t.Errorf("returned after %v with a 100ms context", elapsed)
				}
				if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("err = %v, want context.DeadlineExceeded and the socket's own error", err)
				}
				assertInterrupted(t, pc, true)

				// The next call fails without touching the backend.
				calls := pb.calls.Load()
				if _, err := pc.ExecContext(context.Background(), "x", nil); !errors.Is(err, driver.ErrBadConn) {
					t.Errorf("call after interruption: %v, want ErrBadConn", err)
				}
				if pb.calls.Load() != calls {
					t.Error("a call after interruption reached the backend")
				}

				errs, socks := rec.snapshot()
				if len(errs) == 0 {
					t.Fatal("onError was not told")
				}
				for i, e := range errs {
					if !errors.Is(e, context.DeadlineExceeded) || socks[i] != pc.sock {
						t.Errorf("onError(%v, %v): want the socket and a context error", socks[i], e)
					}
				}
			})
		})
	}
}

func TestPQWatchStatementsDoNotHandContextToLibPQ(t *testing.T) {
	pc, pb := newPipeConn(t, nil)
	st, err := pc.PrepareContext(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.(driver.StmtExecContext).ExecContext(ctx, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	pb.mu.Lock()
	defer pb.mu.Unlock()
	for _, c := range pb.stmtCtxes {
		if c.Done() != nil {
			t.Error("lib/pq's statement was given a context that can end (its cleanup waits for the cancel request)")
		}
	}
}

func TestPQWatchContextEndedAfterCall(t *testing.T) {
	leakCheck(t)
	synctest.Test(t, func(t *testing.T) {
		pc, _ := newPipeConn(t, nil)
		v := make([]driver.Value, 1)
		for i := 0; i < 200; i++ {
			ctx, cancel := context.WithCancel(context.Background())
			if _, err := pc.ExecContext(ctx, "x", nil); err != nil {
				t.Fatal(err)
			}
			rows, err := pc.QueryContext(ctx, "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rows.Next(v); err != io.EOF {
				t.Fatal(err)
			}
			rows.Close()
			if err := pc.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := pc.PrepareContext(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.(driver.StmtExecContext).ExecContext(ctx, nil); err != nil {
				t.Fatal(err)
			}
			st.Close()
			tx, err := pc.BeginTx(ctx, driver.TxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		synctest.Wait() // any AfterFunc left armed has run by now
		assertInterrupted(t, pc, false)
		if n := pc.sock.(*deadlineConn).deadlines.Load(); n != 0 {
			t.Fatalf("a deadline was set on the socket %d times", n)
		}
	})
}

func TestPQWatchContextEndedBeforeCall(t *testing.T) {
	pc, pb := newPipeConn(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pc.ExecContext(ctx, "block", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("ExecContext = %v", err)
	}
	if _, err := pc.QueryContext(ctx, "block", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("QueryContext = %v", err)
	}
	if _, err := pc.BeginTx(ctx, driver.TxOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("BeginTx = %v", err)
	}
	if pb.calls.Load() != 0 {
		t.Fatal("the backend was called with a context that had ended")
	}
	assertInterrupted(t, pc, false)
}

func TestPQWatchLastsUntilRowsClosedAndTxEnds(t *testing.T) {
	leakCheck(t)
	t.Run("rows open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pc, _ := newPipeConn(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			rows, err := pc.QueryContext(ctx, "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			waitInterrupted(t, pc)
			rows.Close()
		})
	})
	t.Run("rows closed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pc, _ := newPipeConn(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			rows, err := pc.QueryContext(ctx, "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			cancel()
			synctest.Wait()
			assertInterrupted(t, pc, false)
		})
	})
	t.Run("tx open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pc, _ := newPipeConn(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			tx, err := pc.BeginTx(ctx, driver.TxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			waitInterrupted(t, pc)
			_ = tx.Rollback() // reaches the backend, which ends its own watch there
			if _, err := pc.ExecContext(context.Background(), "x", nil); !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, context.Canceled) {
				t.Fatalf("call after the transaction's context ended: %v", err)
			}
		})
	})
	t.Run("tx committed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pc, _ := newPipeConn(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			tx, err := pc.BeginTx(ctx, driver.TxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			cancel()
			synctest.Wait()
			assertInterrupted(t, pc, false)
		})
	})
}

func waitInterrupted(t *testing.T, pc *PQConn) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if pc.interrupted.Load() != nil {
			assertInterrupted(t, pc, true)
			return
		}
	}
	t.Fatal("the connection was not interrupted")
}
