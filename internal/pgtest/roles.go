package pgtest

import "fmt"

// Roles and the database created in every cluster.
const (
	// Superuser is the bootstrap superuser. It authenticates with trust over
	// the Unix socket and over loopback TCP.
	Superuser = "postgres"
	// TrustUser is an ordinary role that authenticates with trust. It owns
	// Database.
	TrustUser = "pgfast_trust"
	// ScramUser is an ordinary role that must authenticate with
	// scram-sha-256 using ScramPassword.
	ScramUser = "pgfast_scram"
	// ScramPassword is the password of ScramUser.
	ScramPassword = "s3cret-pw"
	// Database is created in every cluster, owned by TrustUser; ScramUser
	// may connect to it and create objects in its public schema. Tables
	// and sequences that Superuser creates there (for instance with
	// Server.Exec) are fully accessible to TrustUser and ScramUser.
	Database = "pgfast"
)

// provisionSQL creates the roles and the database if they do not exist yet.
// It is a psql script meant to be run as Superuser against the "postgres"
// database, and it is safe to run more than once.
var provisionSQL = fmt.Sprintf(`
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN
		CREATE ROLE %[1]s LOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[2]s') THEN
		CREATE ROLE %[2]s LOGIN;
	END IF;
END
$$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE %[2]s PASSWORD '%[3]s';
SELECT 'CREATE DATABASE %[4]s OWNER %[1]s'
	WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '%[4]s') \gexec
GRANT CONNECT, TEMPORARY ON DATABASE %[4]s TO %[2]s;
\connect %[4]s
GRANT USAGE, CREATE ON SCHEMA public TO %[2]s;
ALTER DEFAULT PRIVILEGES FOR ROLE %[5]s IN SCHEMA public
	GRANT ALL ON TABLES TO %[1]s, %[2]s;
ALTER DEFAULT PRIVILEGES FOR ROLE %[5]s IN SCHEMA public
	GRANT ALL ON SEQUENCES TO %[1]s, %[2]s;
`, TrustUser, ScramUser, ScramPassword, Database, Superuser)
