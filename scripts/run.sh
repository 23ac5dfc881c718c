#!/usr/bin/env bash
# Quick start: build and run `postrider serve`, keeping the mail between runs.
#
# Database: POSTRIDER_DATABASE_URL when set; otherwise a local PostgreSQL on
# 127.0.0.1:5432 (database "postrider", created if missing); otherwise a
# cluster of its own, started by scripts/pgcluster.sh in the state directory
# below on port 55433 (POSTRIDER_PG_PORT; Debian's postgresql package is installed if needed and
# we are root). That cluster and its mail stay there: the next run reuses
# them, and `POSTRIDER_PG_DIR=$STATE/pg scripts/pgcluster.sh stop` stops it.
#
# State directory: /var/lib/postrider as root, else
# ${XDG_DATA_HOME:-~/.local/share}/postrider (POSTRIDER_STATE_DIR overrides);
# POSTRIDER_DATA_DIR (generated certificate) defaults to its data/.
#
# Run as another user than root, the listeners default to the image's
# unprivileged ports (2525, 5587, 5465, 1143, 1993, 1110, 1995); every
# POSTRIDER_* variable you set is passed through (see `postrider config`).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

if [ "$(id -u)" -eq 0 ]; then
	state=${POSTRIDER_STATE_DIR:-/var/lib/postrider}
else
	state=${POSTRIDER_STATE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/postrider}
	for kv in SMTP_ADDR=:2525 SUBMISSION_ADDR=:5587 SUBMISSIONS_ADDR=:5465 IMAP_ADDR=:1143 \
		IMAPS_ADDR=:1993 POP3_ADDR=:1110 POP3S_ADDR=:1995; do
		name=POSTRIDER_${kv%%=*}
		[ -n "${!name+set}" ] || export "$name=${kv#*=}"
	done
fi
mkdir -p "$state"
export POSTRIDER_DATA_DIR=${POSTRIDER_DATA_DIR:-$state/data}

if [ -z "${POSTRIDER_DATABASE_URL:-}" ]; then
	if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
		base="postgres://postgres@127.0.0.1:5432"
	else
		base=$(POSTRIDER_PG_DIR="$state/pg" POSTRIDER_PG_PORT=${POSTRIDER_PG_PORT:-55433} bash scripts/pgcluster.sh start | tail -n 1)
		base=${base%/postgres*}
	fi
	psql "$base/postgres?sslmode=disable" -qAtc "SELECT 1 FROM pg_database WHERE datname='postrider'" | grep -q 1 ||
		psql "$base/postgres?sslmode=disable" -qc "CREATE DATABASE postrider"
	export POSTRIDER_DATABASE_URL="$base/postrider?sslmode=disable"
fi

mkdir -p bin
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
go build -ldflags "-X main.version=$version" -o bin/postrider ./cmd/postrider

cat >&2 <<MSG
postrider $version: database $POSTRIDER_DATABASE_URL
  state (kept between runs): $state

Next, in another terminal, with the same database:
  export POSTRIDER_DATABASE_URL='$POSTRIDER_DATABASE_URL'
  bin/postrider domain add example.org
  echo 'a long passphrase' | bin/postrider user add alice@example.org
  bin/postrider dns example.org      # the DNS records to publish
Then log in to IMAP, POP3 or submission as alice@example.org.

MSG
# The script's own variables are not serve's (it would warn about them).
unset POSTRIDER_STATE_DIR POSTRIDER_PG_PORT
exec bin/postrider serve
