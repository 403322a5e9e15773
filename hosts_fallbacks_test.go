package pgfast

import "testing"

// TestPGXHostaddrKeepsServerName: with a hostaddr, pgx dials the address
// while TLS still checks the host's name.
func TestPGXHostaddrKeepsServerName(t *testing.T) {
	a, _, err := parsePGX("host=db.example,db.example hostaddr=127.0.0.1,127.0.0.2 port=5432 sslmode=prefer")
	if err != nil {
		t.Fatal(err)
	}
	fbs := pgxFallbacks(a.groups, inOrder(len(a.groups)))
	if len(fbs) != 4 {
		t.Fatalf("%d attempts, want 4 (TLS and plaintext per host)", len(fbs))
	}
	for i, want := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"} {
		fb := fbs[i]
		if fb.Host != want || fb.Port != 5432 {
			t.Errorf("attempt %d dials %s:%d, want %s:5432", i, fb.Host, fb.Port, want)
		}
		if tlsWanted := i%2 == 0; (fb.TLSConfig != nil) != tlsWanted {
			t.Errorf("attempt %d: TLS %v, want %v", i, fb.TLSConfig != nil, tlsWanted)
		} else if fb.TLSConfig != nil && fb.TLSConfig.ServerName != "db.example" {
			t.Errorf("attempt %d: TLS server name %q, want db.example", i, fb.TLSConfig.ServerName)
		}
	}
}

// TestPGXHostGroups: whatever the sslmode, pgx's attempt list groups back
// into one group per host of the DSN, repeated hosts included, each with its
// TLS attempts in pgx's order.
func TestPGXHostGroups(t *testing.T) {
	for mode, tlsOrder := range map[string][]bool{
		"disable": {false}, "allow": {false, true}, "prefer": {true, false}, "require": {true},
	} {
		dsn := "host=a.example,a.example,/tmp,b.example port=1,1,2,3 sslmode=" + mode
		a, _, err := parsePGX(dsn)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		want := []HostPort{{Host: "a.example", Port: 1}, {Host: "a.example", Port: 1}, {Host: "/tmp", Port: 2}, {Host: "b.example", Port: 3}}
		if len(a.groups) != len(want) {
			t.Fatalf("sslmode=%s: %d groups %+v, want %d", mode, len(a.groups), a.groups, len(want))
		}
		for i, g := range a.groups {
			if g.HostPort != want[i] {
				t.Errorf("sslmode=%s: group %d is %s, want %s", mode, i, g, want[i])
			}
			order := tlsOrder
			if g.Host == "/tmp" {
				order = []bool{false} // no TLS over a Unix socket
			}
			if len(g.tls) != len(order) {
				t.Errorf("sslmode=%s: group %d has %d attempts, want %d", mode, i, len(g.tls), len(order))
				continue
			}
			for j, tc := range g.tls {
				if (tc != nil) != order[j] {
					t.Errorf("sslmode=%s: group %d attempt %d TLS %v, want %v", mode, i, j, tc != nil, order[j])
				}
			}
		}
	}
}
