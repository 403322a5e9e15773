// Package testkit holds test helpers that need nothing of package pgfast's
// internals: a database/sql load generator that records where each write
// landed, this process's socket and TCP connection counters (from /proc),
// an /etc/hosts resolver that rereads the file on every lookup, bounded
// waits, and small error and logging helpers.
package testkit
