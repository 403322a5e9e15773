// Command rewrite applies the exact substitutions of a spec file to the
// files of a directory, and fails unless each substitution matches exactly
// as often as the spec says, so a change in the upstream sources is noticed
// instead of silently leaving a test on the raw driver. scripts/driver-suites
// uses it to point copies of the drivers' test suites at pgfast.
//
//	rewrite -spec FILE -dir DIR
//
// Each non-comment line of the spec holds four tab-separated fields:
//
//	FILE	COUNT	OLD	NEW
//
// FILE is relative to DIR; in OLD and NEW, \n stands for a newline and \t
// for a tab.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	spec := flag.String("spec", "", "substitution spec file")
	dir := flag.String("dir", ".", "directory the spec's file names are relative to")
	flag.Parse()
	if err := apply(*spec, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "rewrite:", err)
		os.Exit(1)
	}
}

// unescape turns the spec's \n and \t into a newline and a tab.
var unescape = strings.NewReplacer(`\n`, "\n", `\t`, "\t")

func apply(spec, dir string) error {
	f, err := os.Open(spec)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 4 {
			return fmt.Errorf("%s:%d: want FILE<TAB>COUNT<TAB>OLD<TAB>NEW", spec, n)
		}
		want, err := strconv.Atoi(fields[1])
		if err != nil {
			return fmt.Errorf("%s:%d: count: %w", spec, n, err)
		}
		path := filepath.Join(dir, fields[0])
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", spec, n, err)
		}
		old, repl := unescape.Replace(fields[2]), unescape.Replace(fields[3])
		if got := strings.Count(string(b), old); got != want {
			return fmt.Errorf("%s:%d: %s: %q occurs %d times, want %d (upstream changed?)", spec, n, fields[0], fields[2], got, want)
		}
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), old, repl)), 0o644); err != nil {
			return err
		}
	}
	return sc.Err()
}
