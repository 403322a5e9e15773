package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// exclusion is one entry of the exclusion list: a test known to fail
// through pgfast, why, and what a user does about it.
type exclusion struct {
	reason, workaround string
}

// readExclusions reads the entries of suite from path. Each line is
//
//	SUITE TEST | REASON | WORKAROUND
//
// blank lines and lines starting with # are ignored. An empty path is an
// empty list.
func readExclusions(path, suite string) (map[string]exclusion, error) {
	excl := map[string]exclusion{}
	if path == "" {
		return excl, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "|")
		fields := strings.Fields(parts[0])
		if len(parts) != 3 || len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"SUITE TEST | REASON | WORKAROUND\"", path, n)
		}
		if fields[0] != suite {
			continue
		}
		excl[fields[1]] = exclusion{reason: strings.TrimSpace(parts[1]), workaround: strings.TrimSpace(parts[2])}
	}
	return excl, sc.Err()
}
