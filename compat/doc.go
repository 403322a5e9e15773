// Package compat holds pgfast's compatibility tests with the libraries its
// users combine it with: sqlx, GORM (gorm.io/driver/postgres given pgfast's
// *sql.DB) and goose migrations, over both backends ("pgfast" on pgx,
// "pgfast-pq" on lib/pq), against a real PostgreSQL started by
// internal/testdb.
//
// It is a module of its own so that pgfast's users never download these
// libraries. Run ./test.sh (go vet and go test -race) from this directory.
package compat
