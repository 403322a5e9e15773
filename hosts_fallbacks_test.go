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
