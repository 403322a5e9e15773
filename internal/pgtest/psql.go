package pgtest

import (
	"strconv"
	"strings"
)

// Exec runs SQL (one or more statements, or any psql script) as Superuser
// on Database through psql over the Unix socket, stopping at the first
// error.
func (s *Server) Exec(sql string) error {
	_, err := s.psql(Database, sql)
	return err
}

// Query runs SQL like Exec and returns psql's unaligned, tuples-only output
// (psql -At) with surrounding whitespace trimmed: one row per line, columns
// separated by "|".
func (s *Server) Query(sql string) (string, error) {
	out, err := s.psql(Database, sql, "-A", "-t")
	return strings.TrimSpace(out), err
}

// psql runs a script as Superuser on database over the Unix socket.
func (s *Server) psql(database, script string, args ...string) (string, error) {
	argv := []string{
		"-X", "-q", "-w",
		"-v", "ON_ERROR_STOP=1",
		"-h", s.baseDir,
		"-p", strconv.Itoa(s.port),
		"-U", Superuser,
		"-d", database,
	}
	argv = append(argv, args...)
	argv = append(argv, "-f", "-")
	return s.run.run(script, "psql", argv...)
}
