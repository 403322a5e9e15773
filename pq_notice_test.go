package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// received collects what lib/pq's handlers were given.
type received struct {
	mu            sync.Mutex
	notices       []string
	notifications []string
}

func (r *received) notice(e *pq.Error) {
	r.mu.Lock()
	r.notices = append(r.notices, e.Message)
	r.mu.Unlock()
}

func (r *received) notification(n *pq.Notification) {
	r.mu.Lock()
	r.notifications = append(r.notifications, n.Channel+":"+n.Extra)
	r.mu.Unlock()
}

func (r *received) has(notice, notification string) (bool, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var a, b bool
	for _, n := range r.notices {
		a = a || n == notice
	}
	for _, n := range r.notifications {
		b = b || n == notification
	}
	return a, b
}

// raiseAndNotify makes the server send a notice and (to this session, which
// listens) a notification.
func raiseAndNotify(t *testing.T, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []string{
		"DO $$ BEGIN RAISE NOTICE 'hello notice'; END $$",
		"LISTEN pgfast_notice_test",
		"NOTIFY pgfast_notice_test, 'hello notification'",
		"SELECT 1", // the notification comes with the NOTIFY's answer at the latest
	} {
		if _, err := q.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestSetNoticeHandlerOnBothDrivers: pgfast.SetNoticeHandler and
// SetNotificationHandler work on what sql.Conn.Raw gives, with raw lib/pq
// and through pgfast-pq (where pq.SetNoticeHandler panics); on pgx they
// return ErrNotLibPQ.
func TestSetNoticeHandlerOnBothDrivers(t *testing.T) {
	srv := server(t)
	for _, name := range []string{pqCase().raw, pqCase().name} {
		t.Run(name, func(t *testing.T) {
			db, err := sql.Open(name, srv.DSN(pgtest.TrustUser))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			readyT(t, db, 10*time.Second)
			conn, err := db.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var r received
			err = conn.Raw(func(dc any) error {
				if err := SetNoticeHandler(dc, r.notice); err != nil {
					return err
				}
				return SetNotificationHandler(dc, r.notification)
			})
			if err != nil {
				t.Fatal(err)
			}
			raiseAndNotify(t, conn)
			gotNotice, gotNotification := r.has("hello notice", "pgfast_notice_test:hello notification")
			if !gotNotice || !gotNotification {
				t.Errorf("notice %v, notification %v: %+v", gotNotice, gotNotification, &r)
			}
			// nil removes the handler.
			_ = conn.Raw(func(dc any) error { return SetNoticeHandler(dc, nil) })
		})
	}
	t.Run("pgx", func(t *testing.T) {
		db, err := sql.Open("pgx", srv.DSN(pgtest.TrustUser))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = conn.Raw(func(dc any) error { return SetNoticeHandler(dc, func(*pq.Error) {}) })
		if !errors.Is(err, ErrNotLibPQ) {
			t.Errorf("err = %v, want ErrNotLibPQ", err)
		}
	})
}

// TestConnectorWithHandlers: the connector-level wrappers set both handlers
// on every connection of a pgfast connector (LibPQ backend) and of a lib/pq
// connector; Ready still finds pgfast's connector behind them, and closing
// the *sql.DB closes it.
func TestConnectorWithHandlers(t *testing.T) {
	srv := server(t)
	dsn := srv.DSN(pgtest.TrustUser)
	pgfastConn, err := NewConnector(dsn, WithBackend(LibPQ))
	if err != nil {
		t.Fatal(err)
	}
	pqConn, err := pq.NewConnector(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    driver.Connector
	}{{"pgfast-pq", pgfastConn}, {"lib/pq", pqConn}} {
		t.Run(tc.name, func(t *testing.T) {
			var r received
			c := ConnectorWithNotificationHandler(ConnectorWithNoticeHandler(tc.c, r.notice), r.notification)
			db := sql.OpenDB(c)
			readyT(t, db, 10*time.Second)
			if tc.name == "pgfast-pq" && ConnectorOf(db) != pgfastConn {
				t.Error("ConnectorOf does not find pgfast's connector behind the wrapper")
			}
			db.SetMaxOpenConns(1)
			raiseAndNotify(t, db)
			gotNotice, gotNotification := r.has("hello notice", "pgfast_notice_test:hello notification")
			if !gotNotice || !gotNotification {
				t.Errorf("notice %v, notification %v: %+v", gotNotice, gotNotification, &r)
			}
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if tc.name == "pgfast-pq" && pgfastConn.State() != StateClosed {
				t.Errorf("pgfast's connector is %v after db.Close, want closed", pgfastConn.State())
			}
		})
	}
}
