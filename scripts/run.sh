#!/usr/bin/env bash
# Quick start: build and run `postrider serve`.
# Uses POSTRIDER_DATABASE_URL when set; otherwise a local PostgreSQL on
# 127.0.0.1:5432 (database "postrider", created if missing), or a throw-away
# cluster started by scripts/pgcluster.sh. Every other POSTRIDER_* variable
# is passed through (see `postrider config`).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
if [ -z "${POSTRIDER_DATABASE_URL:-}" ]; then
	if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
		base="postgres://postgres@127.0.0.1:5432"
	else
		base=$(bash scripts/pgcluster.sh start | tail -n 1)
		base=${base%/postgres*}
	fi
	psql "$base/postgres?sslmode=disable" -qAtc "SELECT 1 FROM pg_database WHERE datname='postrider'" | grep -q 1 ||
		psql "$base/postgres?sslmode=disable" -qc "CREATE DATABASE postrider"
	export POSTRIDER_DATABASE_URL="$base/postrider?sslmode=disable"
fi
mkdir -p bin
go build -o bin/postrider ./cmd/postrider
echo "postrider: database $POSTRIDER_DATABASE_URL" >&2
exec bin/postrider serve
