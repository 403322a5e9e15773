package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lib/pq"
	"github.com/pgfast/pgfast/internal/secretgen"
)

// FuzzCLINoPassword is the "no password anywhere" property for the CLI:
// the generated passwords of secretgen (a marker inside bytes DSN syntax
// gives a meaning to), in every DSN form, with one broken element: neither
// "pgfast explain" (both parsers) nor "pgfast probe" (text and --json) on a
// DSN it refuses prints the marker in any spelling. Where the raw parser
// reads a password without the marker from the DSN minus its broken element,
// the marker is not the password to that parser and is not looked for.
// probe runs only on DSNs the parser refuses: it makes no connection then.
func FuzzCLINoPassword(f *testing.F) {
	for form := secretgen.Form(0); form < secretgen.NumForms; form++ {
		for b := secretgen.Broken(0); b < secretgen.NumBroken; b++ {
			f.Add(uint64(form)*131+uint64(b)*7+1, "", uint8(form), uint8(b))
		}
	}
	for _, extra := range []string{"p@", "pass?", "pa/", "it's ", `a\ `, "p#", "%zz", "a&b=c", "\u00a0"} {
		f.Add(uint64(len(extra)), extra, uint8(len(extra))%uint8(secretgen.NumForms), uint8(1))
	}
	f.Fuzz(func(t *testing.T, seed uint64, extra string, form, broken uint8) {
		marker := secretgen.Marker(seed)
		pw := secretgen.Password(seed, extra, marker)
		dir := t.TempDir()
		c, ok := secretgen.Build(pw, secretgen.Form(form), secretgen.Broken(broken), dir)
		twin, _ := secretgen.Build(pw, secretgen.Form(form), secretgen.None, dir)
		if !ok {
			return
		}
		for k, v := range c.Env {
			t.Setenv(k, v)
		}
		leak := func(s string) bool {
			for _, sp := range secretgen.Spellings(marker) {
				if strings.Contains(s, sp) {
					return true
				}
			}
			return false
		}
		for _, backend := range []string{"pgx", "pq"} {
			if read, ok := rawPassword(backend, twin.DSN); ok && !strings.Contains(read, marker) {
				continue
			}
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"explain", "--backend", backend, "--", c.DSN}, &out, &errOut)
			if code != exitOK {
				if leak(out.String()) || leak(errOut.String()) {
					t.Errorf("explain --backend %s %q printed the password:\n%s%s", backend, c.DSN, out.String(), errOut.String())
				}
				if backend == "pgx" {
					for _, args := range [][]string{{"probe"}, {"probe", "--json"}} {
						var pout, perr bytes.Buffer
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						run(ctx, append(args, "--", c.DSN), &pout, &perr)
						cancel()
						if leak(pout.String()) || leak(perr.String()) {
							t.Errorf("%v %q printed the password:\n%s%s", args, c.DSN, pout.String(), perr.String())
						}
					}
				}
				continue
			}
			if read, ok := rawPassword(backend, c.DSN); ok && strings.Contains(read, marker) && (leak(out.String()) || leak(errOut.String())) {
				t.Errorf("explain --backend %s %q printed the password:\n%s%s", backend, c.DSN, out.String(), errOut.String())
			}
		}
	})
}

// rawPassword returns the password the raw driver's parser reads from dsn;
// ok is false when it refuses dsn.
func rawPassword(backend, dsn string) (string, bool) {
	if backend == "pgx" {
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return "", false
		}
		return cc.Password, true
	}
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return "", false
	}
	return cfg.Password, true
}
