package pgtest

import "fmt"

// StartStandby clones s with pg_basebackup -R -X stream into a new
// temporary directory and starts the clone as a hot standby streaming from
// s. The standby has its own listen address, port and network namespace
// taken from opts; it replicates through s's Unix socket, which works across
// network namespaces. s must be running. The returned Server is used like
// any other and needs its own Cleanup.
func (s *Server) StartStandby(opts Options) (*Server, error) {
	sb, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if err := sb.cloneFrom(s); err != nil {
		sb.Cleanup()
		return nil, err
	}
	if err := sb.Start(); err != nil {
		sb.Cleanup()
		return nil, err
	}
	return sb, nil
}

// cloneFrom fills s's data directory with a base backup of primary and
// rewrites the copied configuration for s.
func (s *Server) cloneFrom(primary *Server) error {
	source := fmt.Sprintf("host=%s port=%d user=%s", primary.baseDir, primary.port, Superuser)
	_, err := s.run.run("", "pg_basebackup",
		"-D", s.dataDir,
		"-d", source,
		"-R",
		"-X", "stream",
		"-c", "fast",
		"-w",
		"--no-sync",
	)
	if err != nil {
		return fmt.Errorf("%w\nprimary log:\n%s", err, tail(primary.Log()))
	}
	s.provisioned = true // roles and database came with the backup
	return s.writeConfig()
}
