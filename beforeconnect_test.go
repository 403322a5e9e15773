package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"testing"
)

// TestRetryLoginOnlyWithAnotherCredential: a caller's login refused
// (28P01) while a before-connect hook runs is made once more only when the
// hook then gives another user or password. A hook that only orders the
// hosts (stdlib.RandomizeHostOrderFunc) or returns a cached token cost the
// server two failed logins per caller (outside review); the first refusal
// is returned without a second dial.
func TestRetryLoginOnlyWithAnotherCredential(t *testing.T) {
	refused := fmt.Errorf("connecting to a:5432: %w", sqlStateError("28P01"))
	for _, tc := range []struct {
		name  string
		creds []string // what the hook gives, login after login
		dials int      // logins that reach the server
		ok    bool
	}{
		{"same credential again", []string{"tok-1", "tok-1"}, 1, false},
		{"rotated credential", []string{"tok-1", "tok-2"}, 2, true},
		{"rotated, still refused", []string{"tok-1", "tok-3"}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, dials := 0, 0
			login := func(ctx context.Context) (driver.Conn, error) {
				pw := tc.creds[calls]
				calls++
				if err := noteHookCredential(ctx, "app", pw); err != nil {
					return nil, err // the hook's error: no dial
				}
				dials++
				if pw == "tok-2" {
					return nil, nil
				}
				return nil, refused
			}
			_, err := retryLogin(context.Background(), true, login)
			if dials != tc.dials {
				t.Errorf("%d logins dialled, want %d", dials, tc.dials)
			}
			if tc.ok != (err == nil) {
				t.Errorf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, refused) && !authFailure(err) {
				t.Errorf("err = %v, want the server's refusal", err)
			}
		})
	}
}
