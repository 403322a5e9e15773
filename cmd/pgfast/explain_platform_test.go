package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/timeline"
)

// TestExplainSaysWhatThisOSApplies: explain says what pgfast applies on a
// system with less than Linux (the report's Platform as pgfast fills it off
// Linux): tcp_user_timeout not applied on FreeBSD, pgx's ping kept on
// Windows, no dead-peer watcher, and nothing extra on Linux.
func TestExplainSaysWhatThisOSApplies(t *testing.T) {
	info, err := diag.InspectDSN("host=127.0.0.1 tcp_user_timeout=1500", pgfast.PGX)
	if err != nil {
		t.Fatal(err)
	}
	if info.Platform.GOOS == "" {
		t.Fatal("InspectDSN reports no platform")
	}
	for _, tc := range []struct {
		p          diag.Platform
		want, not  []string
		watchedOut bool
	}{
		{p: diag.Platform{GOOS: "linux", Peek: true, KeepaliveTimings: true, UserTimeoutOption: "TCP_USER_TIMEOUT", DeadPeerWatch: true},
			not: []string{"not applied", "On linux"}},
		{p: diag.Platform{GOOS: "freebsd", Peek: true, KeepaliveTimings: true, NotApplied: []string{"tcp_user_timeout"}},
			want: []string{"On freebsd", "tcp_user_timeout is not applied on this OS", "not applied on this OS  ",
				"but not applied here: tcp_user_timeout", "no dead-peer watcher"}, watchedOut: true},
		{p: diag.Platform{GOOS: "windows", KeepaliveTimings: true, UserTimeoutOption: "TCP_MAXRTMS"},
			want: []string{"On windows", "tcp_user_timeout is applied as TCP_MAXRTMS", "ping", "stays on"}, watchedOut: true},
	} {
		in := *info
		in.Platform = tc.p
		e := explain(&in, timeline.LinuxDefaults(), nil)
		var out bytes.Buffer
		writeExplainText(&out, e)
		text := strings.Join(strings.Fields(out.String()), " ") // unwrapped
		raw := out.String()
		for _, w := range tc.want {
			if !strings.Contains(text, strings.Join(strings.Fields(w), " ")) && !strings.Contains(raw, w) {
				t.Errorf("%s: explain does not say %q:\n%s", tc.p.GOOS, w, raw)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(text, n) {
				t.Errorf("%s: explain says %q:\n%s", tc.p.GOOS, n, raw)
			}
		}
		if got := e.drivers[0].watch == nil; got != tc.watchedOut {
			t.Errorf("%s: pgfast modelled without the watcher: %v, want %v", tc.p.GOOS, got, tc.watchedOut)
		}
	}
}
