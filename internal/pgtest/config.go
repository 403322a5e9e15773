package pgtest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// configFile is the file, inside the data directory, holding every setting
// pgtest manages. postgresql.conf includes it; a standby's copy is rewritten.
const configFile = "pgtest.conf"

// baseSettings are the settings of every server, tuned for fast tests and
// for streaming replication. Options.Settings come after and override them.
var baseSettings = [][2]string{
	{"fsync", "off"},
	{"synchronous_commit", "off"},
	{"full_page_writes", "off"},
	{"shared_buffers", "32MB"},
	{"max_connections", "300"},
	{"wal_level", "replica"},
	{"max_wal_senders", "5"},
	{"wal_keep_size", "128MB"},
	{"hot_standby", "on"},
	{"password_encryption", "scram-sha-256"},
	{"logging_collector", "off"},
}

// includeConfig makes postgresql.conf include configFile.
func (s *Server) includeConfig() error {
	path := filepath.Join(s.dataDir, "postgresql.conf")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by pgtest.\ninclude '%s'\n", configFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// writeConfig writes configFile for this server's address, port, socket
// directory and settings.
func (s *Server) writeConfig() error {
	var b strings.Builder
	b.WriteString("# Written by pgtest; rewritten for every server.\n")
	setting := func(name, value string) {
		fmt.Fprintf(&b, "%s = %s\n", name, quoteConf(value))
	}
	setting("listen_addresses", s.opts.listenAddresses())
	setting("port", fmt.Sprint(s.port))
	setting("unix_socket_directories", s.baseDir)
	for _, kv := range baseSettings {
		setting(kv[0], kv[1])
	}
	for _, name := range slices.Sorted(maps.Keys(s.opts.Settings)) {
		setting(name, s.opts.Settings[name])
	}
	return s.run.writeFile(filepath.Join(s.dataDir, configFile), b.String())
}

// quoteConf quotes a postgresql.conf value; quoted values are accepted for
// parameters of every type.
func quoteConf(value string) string {
	value = strings.ReplaceAll(value, `\`, `\\`)
	value = strings.ReplaceAll(value, `'`, `''`)
	return "'" + value + "'"
}

// writeHBA replaces pg_hba.conf. The same rules apply to the Unix socket and
// to loopback TCP: Superuser and TrustUser use trust, ScramUser must use
// scram-sha-256, replication connections are trusted, and any other role
// authenticates with its password (md5 or SCRAM, whichever it has stored).
func (s *Server) writeHBA() error {
	var b strings.Builder
	b.WriteString("# Written by pgtest.\n# TYPE\tDATABASE\tUSER\tADDRESS\tMETHOD\n")
	for _, where := range []string{"local", "host\t127.0.0.0/8", "host\t::1/128"} {
		kind, address, _ := strings.Cut(where, "\t")
		rule := func(database, user, method string) {
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\n", kind, database, user, address, method)
		}
		rule("all", ScramUser, "scram-sha-256")
		rule("all", TrustUser, "trust")
		rule("all", Superuser, "trust")
		rule("replication", "all", "trust")
		rule("all", "all", "md5")
	}
	return s.run.writeFile(filepath.Join(s.dataDir, "pg_hba.conf"), b.String())
}
