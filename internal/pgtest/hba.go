package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PrependHBA puts rules (pg_hba.conf lines) before pgtest's own, so that
// they win for the connections they match. Call it before Start, or reload
// the server afterwards (Restart).
func (s *Server) PrependHBA(rules ...string) error {
	path := filepath.Join(s.dataDir, "pg_hba.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	for _, r := range rules {
		if strings.ContainsAny(r, "\r\n") {
			return fmt.Errorf("pgtest: pg_hba rule must be one line: %q", r)
		}
	}
	content := "# Prepended by PrependHBA.\n" + strings.Join(rules, "\n") + "\n" + string(old)
	return s.run.writeFile(path, content)
}
