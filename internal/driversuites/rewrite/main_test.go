package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApply checks that substitutions apply with \n and \t escapes, and that
// a count that does not match fails instead of leaving the file half done.
func TestApply(t *testing.T) {
	dir := t.TempDir()
	src := "a := open(x)\n\tb := open(x)\n"
	if err := os.WriteFile(filepath.Join(dir, "f.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "spec")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(spec, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write("# comment\nf.go\t1\t\\n\\tb := open(x)\t\\n\\tb := wrap(x)\n")
	if err := apply(spec, dir); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "f.go"))
	if want := "a := open(x)\n\tb := wrap(x)\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	write("f.go\t2\topen(x)\twrap(x)\n")
	if err := apply(spec, dir); err == nil || !strings.Contains(err.Error(), "occurs 1 times, want 2") {
		t.Fatalf("count mismatch: err = %v", err)
	}
	write("f.go\t1\tonly three fields\n")
	if err := apply(spec, dir); err == nil {
		t.Fatal("malformed line: no error")
	}
}
