package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"
)

// maxRuns bounds how often a suite is restarted after a crashing test.
const maxRuns = 30

// runner runs one compiled test binary under test2json.
type runner struct {
	label               string // the run's name in messages
	bin, dir, test2json string
	timeout             time.Duration
	flags               []string
}

// event is one line of test2json's output.
type event struct {
	Action string
	Test   string
	Output string
}

// suite runs every test of the binary with DRIVER_SUITES_DRIVER=driver,
// restarting after a test that kills the binary, skipping the tests that
// already reported.
func (r runner) suite(driver string) (*results, error) {
	res := &results{tests: map[string]*outcome{}}
	for run := 0; ; run++ {
		if run == maxRuns {
			return nil, fmt.Errorf("%s: still crashing after %d runs", driver, maxRuns)
		}
		crashed, err := r.once(driver, res, "")
		if err != nil {
			return nil, err
		}
		if crashed == "" {
			return res, nil
		}
		fmt.Fprintf(os.Stderr, "driver-suites: %s %s: %s panicked and ended the test binary; running the tests that had not finished again\n", r.label, driver, crashed)
	}
}

// retry runs one test again, alone, and reports whether it passed.
func (r runner) retry(driver, name string) (bool, error) {
	res := &results{tests: map[string]*outcome{}}
	if _, err := r.once(driver, res, name); err != nil {
		return false, err
	}
	o := res.tests[name]
	return o != nil && o.status == "pass", nil
}

// once runs the binary once (only the test named only, if set), skipping
// the tests already in res, and records
// what it reports. It returns the name of the test that was running when
// the binary died, if one was.
func (r runner) once(driver string, res *results, only string) (crashed string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+30*time.Second)
	defer cancel()
	args := []string{"-t", r.bin, "-test.v=test2json", "-test.timeout=" + r.timeout.String()}
	if len(res.tests) > 0 {
		var names []string
		for name := range res.tests {
			names = append(names, regexp.QuoteMeta(name))
		}
		args = append(args, "-test.skip=^("+strings.Join(names, "|")+")$")
	}
	if only != "" {
		args = append(args, "-test.run=^"+regexp.QuoteMeta(only)+"$")
	}
	args = append(args, r.flags...)
	cmd := exec.CommandContext(ctx, r.test2json, args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "DRIVER_SUITES_DRIVER="+driver)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	running := map[string]*outcome{} // started top-level tests without a result
	var started []string             // top-level tests started in this run
	var loose []string               // output outside any test
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			loose = append(loose, sc.Text())
			continue
		}
		top, _, sub := strings.Cut(ev.Test, "/")
		switch {
		case ev.Test == "":
			if ev.Action == "output" {
				loose = append(loose, strings.TrimRight(ev.Output, "\n"))
			}
		case ev.Action == "run" && !sub:
			if _, done := res.tests[top]; !done {
				o := &outcome{}
				running[top] = o
				started = append(started, top)
				if !slices.Contains(res.order, top) {
					res.order = append(res.order, top)
				}
			}
		case ev.Action == "output":
			if o := running[top]; o != nil {
				o.output = append(o.output, strings.TrimRight(ev.Output, "\n"))
			}
		case !sub && (ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip"):
			if o := running[top]; o != nil {
				o.status = ev.Action
				res.tests[top] = o
				delete(running, top)
			}
		}
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s run timed out after %v", driver, r.timeout+30*time.Second)
	}
	if len(running) > 0 {
		// The binary died while these tests were running (a panic,
		// os.Exit or the timeout). Those whose output shows a panic
		// failed. If another test of this run reported a panic, the
		// rest were only running next to it (parallel tests) and run
		// again; otherwise they all failed, so every run makes progress.
		culprits := map[string]*outcome{}
		for name, o := range running {
			if hasPanic(o.output) {
				culprits[name] = o
			}
		}
		if len(culprits) == 0 && !panickedIn(res, started) {
			culprits = running
		}
		for name, o := range culprits {
			o.status = "fail"
			o.output = append(o.output, loose...)
			res.tests[name] = o
		}
		crashed = "a test"
		for _, name := range started {
			if o := res.tests[name]; o != nil && o.status == "fail" && hasPanic(o.output) {
				crashed = name
			}
		}
		return crashed, nil
	}
	if waitErr != nil && !anyFailed(res) {
		res.pkgFail = loose
	}
	return "", nil
}

func hasPanic(output []string) bool {
	for _, l := range output {
		if strings.HasPrefix(strings.TrimSpace(l), "panic: ") {
			return true
		}
	}
	return false
}

// panickedIn reports whether one of the tests started in this run failed
// with a panic.
func panickedIn(res *results, started []string) bool {
	for _, name := range started {
		if o := res.tests[name]; o != nil && o.status == "fail" && hasPanic(o.output) {
			return true
		}
	}
	return false
}

func anyFailed(res *results) bool {
	for _, o := range res.tests {
		if o.status == "fail" {
			return true
		}
	}
	return false
}
