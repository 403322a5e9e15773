#!/usr/bin/env bash
# Runs the OpenTelemetry integration's tests against a throwaway PostgreSQL.
# Extra arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
go test -race -count=1 -timeout 5m "$@" ./...
