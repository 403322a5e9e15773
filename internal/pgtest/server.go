package pgtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Server is a throwaway PostgreSQL cluster living in its own temporary
// directory. Create one with New, StartT or StartStandby and always call
// Cleanup.
type Server struct {
	opts    Options
	host    string
	port    int
	binDir  string
	baseDir string // temporary directory; also the Unix socket directory
	dataDir string
	logFile string
	run     *runner

	mu          sync.Mutex // serializes Start, Stop, Restart, Promote, Cleanup
	provisioned bool       // roles and database exist
	cleanedUp   bool
}

var (
	// errCleanedUp is returned when a Server is used after Cleanup.
	errCleanedUp = errors.New("pgtest: server already cleaned up")
	// errNotRoot is returned when Options.NetNS is set without root.
	errNotRoot = errors.New("pgtest: Options.NetNS requires running as root")
)

// New creates a cluster in a new temporary directory: it runs initdb, writes
// postgresql.conf and pg_hba.conf and chooses the port, but does not start
// the server. Clients may therefore be configured with DSN or URL before
// Start is called.
func New(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if err := s.initdb(); err != nil {
		s.Cleanup()
		return nil, err
	}
	return s, nil
}

// newServer validates opts, chooses the port and creates the temporary
// directory, owned by the account the server will run as. The data
// directory does not exist yet.
func newServer(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	as, err := serverAccount()
	if err != nil {
		return nil, err
	}
	if opts.NetNS != "" && os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	port := opts.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, fmt.Errorf("pgtest: choosing a port: %w", err)
		}
	}
	baseDir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{
		opts:    opts,
		host:    opts.host(),
		port:    port,
		binDir:  binDir,
		baseDir: baseDir,
		dataDir: filepath.Join(baseDir, "data"),
		logFile: filepath.Join(baseDir, "server.log"),
		run:     &runner{binDir: binDir, dir: baseDir, netns: opts.NetNS, as: as},
	}
	if err := s.run.chown(baseDir); err != nil {
		s.Cleanup()
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return s, nil
}

// initdb creates and configures the data directory.
func (s *Server) initdb() error {
	_, err := s.run.run("", "initdb",
		"-D", s.dataDir,
		"-U", Superuser,
		"--auth=trust", // replaced by writeHBA
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	if err != nil {
		return err
	}
	if err := s.includeConfig(); err != nil {
		return err
	}
	if err := s.writeConfig(); err != nil {
		return err
	}
	return s.writeHBA()
}

// Host returns the address clients should connect to: the first listen
// address, with "*", "0.0.0.0" and "::" replaced by a loopback address.
func (s *Server) Host() string { return s.host }

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// DataDir returns the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// SocketDir returns the directory holding the server's Unix socket.
func (s *Server) SocketDir() string { return s.baseDir }

// BinDir returns the directory of the PostgreSQL programs the server uses.
func (s *Server) BinDir() string { return s.binDir }

// DSN returns a key=value connection string for user on Database over TCP.
// It includes ScramPassword when user is ScramUser.
func (s *Server) DSN(user string) string {
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.host, s.port, user, Database)
	if user == ScramUser {
		dsn += " password=" + ScramPassword
	}
	return dsn
}

// URL returns a postgres:// connection URL for user on Database over TCP.
// It includes ScramPassword when user is ScramUser.
func (s *Server) URL(user string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(user),
		Host:     net.JoinHostPort(s.host, strconv.Itoa(s.port)),
		Path:     "/" + Database,
		RawQuery: "sslmode=disable",
	}
	if user == ScramUser {
		u.User = url.UserPassword(user, ScramPassword)
	}
	return u.String()
}

// Log returns the content of the server log, for test failure messages. It
// returns "" if there is no log yet.
func (s *Server) Log() string {
	data, err := os.ReadFile(s.logFile)
	if err != nil {
		return ""
	}
	return string(data)
}
