package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoPostgres is returned (wrapped) when no PostgreSQL binaries are found.
var ErrNoPostgres = errors.New("pgtest: PostgreSQL binaries (initdb, pg_ctl, postgres, psql) not found")

// requiredPrograms must all live in the directory returned by FindBinDir.
var requiredPrograms = []string{"initdb", "pg_ctl", "postgres", "psql"}

// debianBinDirs matches the per-version directories of Debian/Ubuntu packages.
const debianBinDirs = "/usr/lib/postgresql/*/bin"

// FindBinDir returns the directory holding initdb, pg_ctl, postgres and psql.
// It looks at the directory of pg_ctl found in PATH first (following
// symlinks), then at the highest-version /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if path, err := exec.LookPath("pg_ctl"); err == nil {
		candidates := []string{filepath.Dir(path)}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		for _, dir := range candidates {
			if hasPrograms(dir) {
				return dir, nil
			}
		}
	}
	dirs, _ := filepath.Glob(debianBinDirs)
	slices.SortFunc(dirs, func(a, b string) int {
		return slices.Compare(versionOf(b), versionOf(a)) // highest first
	})
	for _, dir := range dirs {
		if hasPrograms(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w in PATH or %s", ErrNoPostgres, debianBinDirs)
}

// hasPrograms reports whether dir contains every required executable.
func hasPrograms(dir string) bool {
	for _, name := range requiredPrograms {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// versionOf extracts the numeric components of the version directory in a
// path like /usr/lib/postgresql/15/bin or /usr/lib/postgresql/9.6/bin.
func versionOf(binDir string) []int {
	var parts []int
	for _, field := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(field)
		if err != nil {
			break
		}
		parts = append(parts, n)
	}
	return parts
}
