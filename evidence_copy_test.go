package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// copyRows is an io.Reader of COPY text rows "id\tpad\n" with ids from..to-1.
type copyRows struct {
	next, end int
	buf       []byte
}

func newCopyRows(from, to int) *copyRows { return &copyRows{next: from, end: to} }

func (r *copyRows) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			if r.next >= r.end {
				break
			}
			r.buf = append(strconv.AppendInt(r.buf[:0], int64(r.next), 10), '\t')
			r.buf = append(r.buf, copyPadText...)
			r.buf = append(r.buf, '\n')
			r.next++
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// copyPadText is the pad column of every row (90 bytes).
var copyPadText = []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")

// copyInto copies rows from..to-1 into table through db: pgx (pgfast or raw
// "pgx") streams them with PgConn().CopyFrom; lib/pq (pgfast-pq or raw
// "postgres") with pq.CopyIn, one Exec per row.
func copyInto(ctx context.Context, db *sql.DB, driverName, table string, from, to int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	switch driverName {
	case "pgfast", "pgx":
		return conn.Raw(func(dc any) error {
			tag, err := dc.(*stdlib.Conn).Conn().PgConn().CopyFrom(ctx, newCopyRows(from, to),
				"COPY "+table+" (id, pad) FROM STDIN")
			if err == nil && tag.RowsAffected() != int64(to-from) {
				err = fmt.Errorf("copied %d rows, want %d", tag.RowsAffected(), to-from)
			}
			return err
		})
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	//lint:ignore SA1019 drop-in: code written for lib/pq uses pq.CopyIn, which must keep working
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn(table, "id", "pad"))
	if err != nil {
		return err
	}
	// Closed before the rollback: lib/pq's COPY reads responses in a
	// goroutine of its own that a rollback must not race.
	defer stmt.Close()
	pad := string(copyPadText)
	for i := from; i < to; i++ {
		if _, err := stmt.ExecContext(ctx, i, pad); err != nil {
			return err
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return err
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	return tx.Commit()
}

// lockWaitRows is the size of the lock-wait COPY: 400,000 rows of ~100
// bytes, 40 MB, several times what the socket buffers of both ends hold.
const lockWaitRows = 400_000

// lockWaitHold is how long the row lock is held. Linux 5.1+ aborts a
// zero-window stall at TCP_USER_TIMEOUT (25 s was pgfast's old default).
const lockWaitHold = 60 * time.Second

// TestLockWaitCopy is item 1 of issue 10: a COPY whose backend waits on a
// row lock stops reading its socket; the client's send queue fills and the
// server advertises a zero window while it still ACKs every window probe. It
// must complete as with the raw driver (run beside it), evict nothing, leave a
// neighbour's pg_sleep in flight alone and keep the connector Ready.
func TestLockWaitCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over a minute")
	}
	srv := server(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			lockWaitCopy(t, srv, b)
		})
	}
}

func lockWaitCopy(t *testing.T, srv *pgtest.Server, b backendCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*lockWaitHold)
	defer cancel()
	dsn := srv.DSN(pgtest.TrustUser)
	db := openT(t, b, dsn)
	readyT(t, db, 10*time.Second)
	c := ConnectorOf(db)
	raw, err := sql.Open(b.raw, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	locker, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()

	// One table per driver; each COPY's first row waits for a row locked by
	// an uncommitted INSERT of the same key (unique index).
	tables := map[string]*sql.DB{"lockwait_" + sanitize(b.name): db, "lockwait_raw_" + sanitize(b.raw): raw}
	var holders []*sql.Tx
	for table := range tables {
		mustExec(t, locker, "DROP TABLE IF EXISTS "+table)
		mustExec(t, locker, "CREATE TABLE "+table+" (id int PRIMARY KEY, pad text)")
		tx, err := locker.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (0, 'held')"); err != nil {
			t.Fatal(err)
		}
		holders = append(holders, tx)
	}
	before := settledStats(t, c)

	type outcome struct {
		took time.Duration
		err  error
	}
	results := make(map[string]outcome)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for table, tdb := range tables {
		name := b.name
		if tdb == raw {
			name = b.raw + " (raw)"
		}
		drv := b.name
		if tdb == raw {
			drv = b.raw
		}
		wg.Go(func() {
			err := copyInto(ctx, tdb, drv, table, 0, lockWaitRows)
			mu.Lock()
			results[name] = outcome{time.Since(start), err}
			mu.Unlock()
		})
	}
	// A neighbour: a query in flight across the moment the old default
	// TCP_USER_TIMEOUT (25 s) would have aborted the COPY.
	neighbour := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(ctx, "SELECT pg_sleep(35)")
		neighbour <- err
	}()

	time.Sleep(lockWaitHold)
	for _, tx := range holders {
		_ = tx.Rollback()
	}
	wg.Wait()
	nerr := <-neighbour

	for name, r := range results {
		t.Logf("MEASURE lock-wait-copy backend=%s driver=%s took=%v err=%v", b.name, name, r.took.Round(time.Millisecond), r.err)
		if r.err != nil {
			t.Errorf("%s: COPY after a %v lock wait failed after %v: %v", name, lockWaitHold, r.took.Round(time.Millisecond), r.err)
		}
	}
	if nerr != nil {
		t.Errorf("the neighbour's pg_sleep(35) failed: %v", nerr)
	}
	after := c.Stats()
	if after.Evictions != before.Evictions {
		t.Errorf("Evictions %d → %d during a lock wait (last error %v)", before.Evictions, after.Evictions, after.LastError)
	}
	if after.State != StateReady || after.StateChanges != before.StateChanges {
		t.Errorf("state %v (%d changes, %d before), want Ready throughout: %v", after.State, after.StateChanges, before.StateChanges, after.LastError)
	}
	var n int
	for table, tdb := range tables {
		if err := tdb.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != lockWaitRows {
			t.Errorf("%s: %d rows (%v), want %d", table, n, err, lockWaitRows)
		}
	}
}

// sanitize makes a driver name usable in a table name.
func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			out[i] = '_'
		}
	}
	return string(out)
}

// TestLockWaitCopyUserTimeout: with tcp_user_timeout set, the socket gets
// exactly that (libpq's meaning), so the kernel (Linux 5.1+) aborts the
// zero-window stall of a lock-waiting COPY with ETIMEDOUT. The server was
// heard all along (it ACKs every window probe): connection-level evidence.
// Only that COPY fails; nothing is evicted, the connector stays Ready and a
// neighbour's query in flight finishes.
func TestLockWaitCopyUserTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 20 seconds")
	}
	srv := server(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dsn := srv.DSN(pgtest.TrustUser)
			db := openT(t, b, withKV(dsn, "tcp_user_timeout=4000"))
			readyT(t, db, 10*time.Second)
			c := ConnectorOf(db)
			locker, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer locker.Close()
			table := "lockwait_ut_" + sanitize(b.name)
			mustExec(t, locker, "DROP TABLE IF EXISTS "+table)
			mustExec(t, locker, "CREATE TABLE "+table+" (id int PRIMARY KEY, pad text)")
			tx, err := locker.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (0, 'held')"); err != nil {
				t.Fatal(err)
			}
			before := settledStats(t, c)
			neighbour := make(chan error, 1)
			go func() {
				_, err := db.ExecContext(ctx, "SELECT pg_sleep(12)")
				neighbour <- err
			}()
			start := time.Now()
			err = copyInto(ctx, db, b.name, table, 0, lockWaitRows)
			took := time.Since(start)
			t.Logf("MEASURE lock-wait-copy-user-timeout backend=%s took=%v err=%v", b.name, took.Round(time.Millisecond), err)
			if err == nil {
				t.Errorf("the COPY survived a lock wait longer than tcp_user_timeout=4000 (the kernel should abort it)")
			}
			if nerr := <-neighbour; nerr != nil {
				t.Errorf("the neighbour's pg_sleep(12) failed: %v", nerr)
			}
			_ = tx.Rollback()
			after := c.Stats()
			if after.Evictions != before.Evictions {
				t.Errorf("Evictions %d → %d: a zero-window abort of a live server evicted the address (%v)", before.Evictions, after.Evictions, after.LastError)
			}
			if after.State != StateReady || after.StateChanges != before.StateChanges {
				t.Errorf("state %v (%d changes, %d before), want Ready throughout: %v", after.State, after.StateChanges, before.StateChanges, after.LastError)
			}
			var one int
			if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
				t.Errorf("a query after the aborted COPY: %v", err)
			}
		})
	}
}
