package pgfast

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesAttached checks that go/doc (pkg.go.dev, godoc) attaches every
// Example function of the package's tests to the package or to an exported
// identifier: an example named against the rules is silently left out.
func TestExamplesAttached(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	declared := map[string]bool{}
	for _, n := range names {
		f, err := parser.ParseFile(fset, n, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		if !strings.HasSuffix(n, "_test.go") {
			continue
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Example") {
				declared[fn.Name.Name] = true
			}
		}
	}
	p, err := doc.NewFromFiles(fset, files, "github.com/pgfast/pgfast")
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	add := func(prefix string, exs []*doc.Example) {
		for _, e := range exs {
			name := "Example" + prefix
			if e.Suffix != "" {
				name += "_" + e.Suffix
			}
			shown[name] = true
		}
	}
	add("", p.Examples)
	for _, f := range p.Funcs {
		add(f.Name, f.Examples)
	}
	for _, ty := range p.Types {
		add(ty.Name, ty.Examples)
		for _, f := range ty.Funcs {
			add(f.Name, f.Examples)
		}
		for _, m := range ty.Methods {
			add(ty.Name+"_"+m.Name, m.Examples)
		}
	}
	if len(declared) == 0 {
		t.Fatal("no examples found")
	}
	for name := range declared {
		if !shown[name] {
			t.Errorf("%s is not attached to anything: go/doc does not show it", name)
		}
	}
}
