package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// What a first-time user runs into: help, flag errors, error wording,
// --json on errors, and the probe's TLS and auth lines.

func TestCLIHelpOnEveryCommand(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		flags []string
	}{
		{"probe", []string{"--json", "--help"}},
		{"explain", []string{"--backend", "--help"}},
	} {
		for _, help := range []string{"--help", "-h", "-help"} {
			r := runBin(t, nil, tc.cmd, help)
			if r.code != exitOK || r.stderr != "" || !strings.HasPrefix(r.stdout, "usage: pgfast "+tc.cmd) {
				t.Errorf("%s %s: want exit 0 and the help on stdout:\n%v", tc.cmd, help, r)
			}
			for _, f := range tc.flags {
				if !strings.Contains(r.stdout, f) {
					t.Errorf("%s %s: help lacks %s:\n%v", tc.cmd, help, f, r)
				}
			}
		}
	}
	if r := runBin(t, nil, "probe", "--help"); !strings.Contains(r.stdout, "130 interrupted") {
		t.Errorf("probe --help does not document the exit status:\n%v", r)
	}
	if r := runBin(t, nil, "help"); !strings.Contains(r.stdout, "130  interrupted") || !strings.Contains(r.stdout, "2    bad command line") {
		t.Errorf("help does not document the exit codes:\n%v", r)
	}
}

func TestCLIUnknownFlagReportedOnce(t *testing.T) {
	for _, cmd := range []string{"probe", "explain"} {
		r := runBin(t, nil, cmd, "--nope", "host=a")
		if r.code != exitUsage {
			t.Errorf("%s --nope: want exit 2:\n%v", cmd, r)
		}
		if n := strings.Count(r.stderr, "flag provided but not defined: -nope"); n != 1 {
			t.Errorf("%s --nope: the error is printed %d times, want once:\n%v", cmd, n, r)
		}
		if !strings.HasPrefix(r.stderr, "pgfast "+cmd+": ") || !strings.Contains(r.stderr, "pgfast "+cmd+" --help") {
			t.Errorf("%s --nope: want the command's name and a pointer to --help:\n%v", cmd, r)
		}
	}
}

func TestCLIErrorsWithoutStutter(t *testing.T) {
	for _, cmd := range []string{"probe", "explain"} {
		r := runBin(t, nil, cmd, "host=127.0.0.1 keepalives_idle=soon")
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "pgfast "+cmd+": invalid DSN: keepalives_idle") {
			t.Errorf("%s: want one prefix then the reason:\n%v", cmd, r)
		}
		if strings.Count(r.stderr, "pgfast") != 1 {
			t.Errorf("%s: the error stutters:\n%v", cmd, r)
		}
	}
}

func TestCLIJSONAlwaysAnObject(t *testing.T) {
	const secret = "Sekr1t-json-Pw"
	for _, args := range [][]string{
		{"probe", "--json", "host=127.0.0.1 password=" + secret + " keepalives_idle=soon"},
		{"probe", "--json", "host=a", "host=b"},
	} {
		r := runBin(t, nil, args...)
		if r.code != exitUsage {
			t.Errorf("%q: want exit 2:\n%v", args, r)
		}
		var got errorJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Errorf("%q: stdout is not a JSON object: %v\n%v", args, err, r)
			continue
		}
		if got.Usable || got.Error == "" || got.FailedAt == "" {
			t.Errorf("%q: error object %+v", args, got)
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("%q prints the password:\n%v", args, r)
		}
	}
}

func TestCLIProbeAuthFailureTLSLine(t *testing.T) {
	s := server(t)
	wrong := strings.Replace(s.DSN(pgtest.ScramUser), pgtest.ScramPassword, "Wr0ng-tls-Pw", 1)
	prefer := strings.Replace(wrong, "sslmode=disable", "sslmode=prefer", 1)
	r := runBin(t, nil, "probe", prefer)
	if r.code != exitNoServer || !strings.Contains(r.stdout, "28P01") {
		t.Fatalf("want exit 1 and SQLSTATE 28P01:\n%v", r)
	}
	t.Logf("sslmode=prefer, wrong password:\n%s", r.stdout)
	tls := rowOf(r.stdout, "TLS:")
	if len(tls) == 0 || strings.Contains(r.stdout, "not requested by sslmode") {
		t.Errorf("sslmode=prefer: the TLS line must not say TLS was not requested:\n%v", r)
	}
	r = runBin(t, nil, "probe", wrong)
	if !strings.Contains(r.stdout, "TLS:     none (not requested by sslmode)") {
		t.Errorf("sslmode=disable: want TLS not requested:\n%v", r)
	}
}

func TestCLIProbeAuthLineNamesTLSOnlyWithTLS(t *testing.T) {
	s := server(t)
	for name, dsn := range map[string]string{
		"tcp":  s.DSN(pgtest.TrustUser),
		"unix": fmt.Sprintf("host=%s port=%d user=%s dbname=%s", s.SocketDir(), s.Port(), pgtest.TrustUser, pgtest.Database),
	} {
		r := runBin(t, nil, "probe", dsn)
		if r.code != exitOK {
			t.Fatalf("%s: want exit 0:\n%v", name, r)
		}
		if !strings.Contains(r.stdout, "auth:    ok (connected, startup and auth in ") || strings.Contains(r.stdout, "connected, TLS") {
			t.Errorf("%s without TLS: the auth line names TLS:\n%v", name, r)
		}
	}
}

func TestCLINoDashPlaceholders(t *testing.T) {
	port := freePort(t)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=app connect_timeout=2", port) // no dbname
	for _, cmd := range []string{"probe", "explain"} {
		r := runBin(t, []string{"PGDATABASE="}, cmd, dsn)
		first, _, _ := strings.Cut(r.stdout, "\n")
		if strings.Contains(r.stdout, "=-") || strings.Contains(first, "database=") {
			t.Errorf("%s: an unset database is shown:\n%v", cmd, r)
		}
		if !strings.Contains(first, "user=app") {
			t.Errorf("%s: first line %q lacks the user", cmd, first)
		}
	}
}

func TestCLIExplainWarnsNeverDetected(t *testing.T) {
	r := runBin(t, nil, "explain", "host=127.0.0.1 user=app keepalives=0")
	if r.code != exitOK {
		t.Fatalf("want exit 0:\n%v", r)
	}
	if !strings.Contains(r.stdout, "WARNING: with keepalives=0 pgfast never detects a dead peer on an idle connection") {
		t.Errorf("keepalives=0: no warning that an idle dead peer is never detected:\n%v", r)
	}
	if r := runBin(t, nil, "explain", "host=127.0.0.1 user=app"); strings.Contains(r.stdout, "WARNING") {
		t.Errorf("defaults: unexpected warning:\n%v", r)
	}
}
