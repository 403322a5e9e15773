package main

import (
	"io"
	"testing"
)

// TestExclusionsFileParses checks the committed exclusion list: every line
// parses, and every entry has a reason and a workaround.
func TestExclusionsFileParses(t *testing.T) {
	for _, suite := range []string{"pgx", "pq"} {
		excl, err := readExclusions("../exclusions.txt", suite)
		if err != nil {
			t.Fatal(err)
		}
		for name, e := range excl {
			if e.reason == "" || e.workaround == "" {
				t.Errorf("%s %s: reason %q, workaround %q: both are required", suite, name, e.reason, e.workaround)
			}
		}
	}
}

func outcomes(status map[string]string) *results {
	r := &results{tests: map[string]*outcome{}}
	for name, s := range status {
		r.tests[name] = &outcome{status: s, output: []string{"x_test.go:1: " + s}}
		r.order = append(r.order, name)
	}
	return r
}

// TestReportVerdict checks which pgfast failures fail the run.
func TestReportVerdict(t *testing.T) {
	excl := map[string]exclusion{"TestKnown": {reason: "r", workaround: "w"}}
	tests := []struct {
		name        string
		raw, pgfast string
		flaky       bool
		strict      bool
		ok          bool
	}{
		{"TestNew", "pass", "fail", false, false, false},
		{"TestKnown", "pass", "fail", false, false, true},
		{"TestUpstream", "fail", "fail", false, false, true},
		{"TestNew", "pass", "fail", true, false, true},
		{"TestNew", "pass", "fail", true, true, false},
		{"TestNew", "pass", "pass", false, true, true},
		{"TestNew", "pass", "skip", false, true, true},
	}
	for _, tt := range tests {
		raw := outcomes(map[string]string{tt.name: tt.raw, "TestOther": "pass"})
		via := outcomes(map[string]string{tt.name: tt.pgfast, "TestOther": "pass"})
		via.tests[tt.name].flaky = tt.flaky
		if ok := report(io.Discard, "s", raw, via, excl, tt.strict); ok != tt.ok {
			t.Errorf("%s raw %s, pgfast %s (flaky %v, strict %v): ok = %v, want %v",
				tt.name, tt.raw, tt.pgfast, tt.flaky, tt.strict, ok, tt.ok)
		}
	}
}

// TestReportPackageFailure checks that a failure outside any test (TestMain)
// fails the run only when the raw run has none.
func TestReportPackageFailure(t *testing.T) {
	raw := outcomes(map[string]string{"TestA": "pass"})
	via := outcomes(map[string]string{"TestA": "pass"})
	via.pkgFail = []string{"connection still active"}
	if report(io.Discard, "s", raw, via, nil, false) {
		t.Error("package-level failure through pgfast only: ok = true")
	}
	raw.pkgFail = []string{"connection still active"}
	if !report(io.Discard, "s", raw, via, nil, false) {
		t.Error("package-level failure in both runs: ok = false")
	}
}
