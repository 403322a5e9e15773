// Command suiterun runs one driver's own test suite twice from the same
// compiled test binary, first on the raw driver and then through pgfast, and
// compares the two runs against an exclusion list. It is the engine of
// scripts/driver-suites; run that script rather than this command.
//
//	suiterun -suite NAME -bin TEST_BINARY -dir WORKDIR -test2json PATH \
//	    -exclude FILE [-timeout 3m] [-- EXTRA TEST FLAGS]
//
// The binary picks the driver from DRIVER_SUITES_DRIVER ("raw" or
// "pgfast"). A test that panics or exits aborts a Go test binary, so a run
// is repeated, skipping the tests that already reported, until every test
// has a result. suiterun prints one summary line per run,
//
//	driver-suites: NAME raw: N passed, M failed, K skipped
//	driver-suites: NAME pgfast: N passed, M failed (E excluded, R also fail raw), K skipped
//
// the failures with the first lines of their output, and exits 1 when a test
// fails through pgfast that passes raw and is not excluded. Such a test is
// first run once more, alone: if it passes then, it is reported as flaky,
// which fails the run only with -strict.
package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	suite := flag.String("suite", "", "suite name used in the exclusion file and the summary")
	label := flag.String("label", "", "name of this run in the summary and log files (default: -suite)")
	bin := flag.String("bin", "", "compiled test binary (go test -c)")
	dir := flag.String("dir", ".", "working directory of the test binary")
	t2j := flag.String("test2json", "", "path of go tool test2json")
	exclude := flag.String("exclude", "", "exclusion list file")
	timeout := flag.Duration("timeout", 3*time.Minute, "limit of one run of the binary")
	strict := flag.Bool("strict", false, "a flaky failure through pgfast fails the run too")
	logDir := flag.String("logdir", "", "directory for the full output of failed tests (SUITE-DRIVER.log)")
	flag.Parse()
	if *suite == "" || *bin == "" || *t2j == "" {
		fmt.Fprintln(os.Stderr, "usage: suiterun -suite NAME -bin BINARY -test2json PATH [-dir DIR] [-exclude FILE] [-- FLAGS]")
		os.Exit(2)
	}
	excl, err := readExclusions(*exclude, *suite)
	if *label == "" {
		label = suite
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "suiterun:", err)
		os.Exit(2)
	}
	r := runner{label: *label, bin: *bin, dir: *dir, test2json: *t2j, timeout: *timeout, flags: flag.Args()}
	raw, err := r.suite("raw")
	if err != nil {
		fmt.Fprintln(os.Stderr, "suiterun:", err)
		os.Exit(1)
	}
	via, err := r.suite("pgfast")
	if err != nil {
		fmt.Fprintln(os.Stderr, "suiterun:", err)
		os.Exit(1)
	}
	// A failure through pgfast that is neither excluded nor failing raw
	// is run once more, alone, to tell a flaky test from a broken one.
	for _, name := range via.failed() {
		if _, isExcl := excl[name]; isExcl || raw.tests[name] == nil || raw.tests[name].status == "fail" {
			continue
		}
		passed, err := r.retry("pgfast", name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "suiterun:", err)
			os.Exit(1)
		}
		if passed {
			via.tests[name].flaky = true
		}
	}
	if *logDir != "" {
		for driver, res := range map[string]*results{"raw": raw, "pgfast": via} {
			if err := writeLog(filepath.Join(*logDir, *label+"-"+driver+".log"), res); err != nil {
				fmt.Fprintln(os.Stderr, "suiterun:", err)
			}
		}
	}
	if !report(os.Stdout, *label, raw, via, excl, *strict) {
		os.Exit(1)
	}
}

// outcome is how one top-level test ended.
type outcome struct {
	status string   // "pass", "fail" or "skip"
	flaky  bool     // failed, then passed when run again alone
	output []string // the test's output lines, in order
}

// results holds one driver's run of the suite.
type results struct {
	tests   map[string]*outcome
	order   []string // test names in the order they started
	pkgFail []string // output of a failure not attributed to a test (TestMain)
}

func (r *results) count(status string) int {
	n := 0
	for _, o := range r.tests {
		if o.status == status {
			n++
		}
	}
	return n
}

// failed returns the names of the failed tests in start order.
func (r *results) failed() []string {
	var names []string
	for _, name := range r.order {
		if r.tests[name].status == "fail" {
			names = append(names, name)
		}
	}
	return names
}

// firstLines returns up to n meaningful output lines of a failed test.
func firstLines(o *outcome, n int) []string {
	var lines []string
	for _, l := range o.output {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") || slices.Contains(lines, t) {
			continue
		}
		lines = append(lines, t)
		if len(lines) == n {
			break
		}
	}
	return lines
}

// report prints the summary and reports whether the pgfast run is
// acceptable: every failure through pgfast is excluded or also fails raw.
func report(w io.Writer, suite string, raw, via *results, excl map[string]exclusion, strict bool) bool {
	ok := true
	fmt.Fprintf(w, "driver-suites: %s raw: %d passed, %d failed, %d skipped\n",
		suite, raw.count("pass"), raw.count("fail"), raw.count("skip"))
	for _, name := range raw.failed() {
		fmt.Fprintf(w, "  raw FAIL %s (upstream or environment, not pgfast): %s\n",
			name, strings.Join(firstLines(raw.tests[name], 2), " | "))
	}
	if len(raw.pkgFail) > 0 {
		fmt.Fprintf(w, "  raw package-level failure: %s\n", strings.Join(tail(raw.pkgFail, 3), " | "))
	}

	var excluded, alsoRaw, flaky, broken int
	var lines []string
	for _, name := range via.failed() {
		first := strings.Join(firstLines(via.tests[name], 3), " | ")
		switch e, isExcl := excl[name]; {
		case raw.tests[name] == nil || raw.tests[name].status == "fail":
			alsoRaw++
			lines = append(lines, fmt.Sprintf("  pgfast FAIL %s [fails raw too]: %s", name, first))
		case isExcl:
			excluded++
			lines = append(lines, fmt.Sprintf("  pgfast FAIL %s [excluded: %s]: %s", name, e.reason, first))
		case via.tests[name].flaky:
			flaky++
			lines = append(lines, fmt.Sprintf("  pgfast FAIL %s [FLAKY: passed when run again alone; passes raw]: %s", name, first))
		default:
			broken++
			lines = append(lines, fmt.Sprintf("  pgfast FAIL %s [NOT EXCLUDED, passes raw]: %s", name, first))
		}
	}
	fmt.Fprintf(w, "driver-suites: %s pgfast: %d passed, %d failed (%d excluded, %d also fail raw, %d flaky, %d unexpected), %d skipped\n",
		suite, via.count("pass"), via.count("fail"), excluded, alsoRaw, flaky, broken, via.count("skip"))
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	for _, name := range via.order {
		if o := via.tests[name]; o.status == "skip" && (raw.tests[name] == nil || raw.tests[name].status != "skip") {
			fmt.Fprintf(w, "  pgfast SKIP %s (skipped through pgfast, runs raw): %s\n", name, strings.Join(skipReason(o), " | "))
		}
	}
	if len(via.pkgFail) > 0 && len(raw.pkgFail) == 0 {
		broken++
		fmt.Fprintf(w, "  pgfast package-level failure (raw has none): %s\n", strings.Join(tail(via.pkgFail, 5), " | "))
	}
	for _, name := range slices.Sorted(maps.Keys(excl)) {
		if o := via.tests[name]; o != nil && o.status == "pass" {
			fmt.Fprintf(w, "  note: excluded %s passed through pgfast this time (flaky, or fixed: drop it from the list)\n", name)
		}
		if via.tests[name] == nil && raw.tests[name] == nil {
			fmt.Fprintf(w, "  note: excluded %s is not in the suite (renamed upstream?)\n", name)
		}
	}
	if flaky > 0 {
		fmt.Fprintf(w, "driver-suites: %s: %d test(s) failed through pgfast and then passed alone (flaky; -strict fails the run on them)\n", suite, flaky)
		if strict {
			ok = false
		}
	}
	if broken > 0 {
		ok = false
		fmt.Fprintf(w, "driver-suites: %s: %d test(s) fail through pgfast that pass on the raw driver and are not excluded\n", suite, broken)
	}
	return ok
}

// writeLog writes the full output of every failed test of res to path.
func writeLog(path string, res *results) error {
	var b strings.Builder
	for _, name := range res.failed() {
		fmt.Fprintf(&b, "=== %s\n%s\n\n", name, strings.Join(res.tests[name].output, "\n"))
	}
	if len(res.pkgFail) > 0 {
		fmt.Fprintf(&b, "=== (package)\n%s\n", strings.Join(res.pkgFail, "\n"))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// skipReason returns the line of a skipped test's output that says why.
func skipReason(o *outcome) []string {
	for _, l := range o.output {
		if t := strings.TrimSpace(l); strings.Contains(t, ".go:") {
			return []string{t}
		}
	}
	return firstLines(o, 1)
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}
