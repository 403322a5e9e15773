//go:build linux

package fleet

import (
	"reflect"
	"testing"
)

// TestCountLog: logins are the role's "connection authorized" lines only
// (not another role's, not psql's over the socket); connections received
// are TCP ones of any role; FATALs are the role's and those of sessions the
// server had not yet put a role on, never another role's.
func TestCountLog(t *testing.T) {
	log := `2026-12-07 15:00:00.001 UTC [10] @ LOG:  connection received: host=127.0.0.1 port=50000
2026-12-07 15:00:00.002 UTC [10] scale_pgfast@pgfast LOG:  connection authorized: user=scale_pgfast database=pgfast application_name=x
2026-12-07 15:00:00.003 UTC [11] @ LOG:  connection received: host=::1 port=50001
2026-12-07 15:00:00.004 UTC [11] scale_pgfast_pq@pgfast LOG:  connection authorized: user=scale_pgfast_pq database=pgfast
2026-12-07 15:00:00.005 UTC [12] @ LOG:  connection received: host=[local]
2026-12-07 15:00:00.006 UTC [12] postgres@pgfast LOG:  connection authorized: user=postgres database=pgfast application_name=psql
2026-12-07 15:00:00.007 UTC [13] scale_pgfast@pgfast FATAL:  sorry, too many clients already
2026-12-07 15:00:00.008 UTC [14] scale_pgfast_pq@pgfast FATAL:  sorry, too many clients already
2026-12-07 15:00:00.009 UTC [15] @ FATAL:  the database system is starting up
2026-12-07 15:00:00.010 UTC [16] scale_pgfast@pgfast LOG:  connection authorized: user=scale_pgfast database=pgfast
`
	got := CountLog(log, "scale_pgfast")
	want := LogCounts{Logins: 2, Received: 2, Fatals: 2, FatalKinds: map[string]int{
		"sorry, too many clients already":    1,
		"the database system is starting up": 1,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountLog = %+v, want %+v", got, want)
	}
	mark := Mark(log[:100])
	if got := mark.Since(log); got != log[100:] {
		t.Errorf("Since = %q", got[:20])
	}
	if got := mark.Since("short"); got != "" {
		t.Errorf("Since after the log was replaced = %q, want empty", got)
	}
}
