#!/usr/bin/env bash
# Start (or reuse) a throw-away PostgreSQL cluster for tests and print its URL.
#   scripts/pgcluster.sh start   -> prints postgres://...  (last line)
#   scripts/pgcluster.sh stop
# The cluster lives in ${POSTRIDER_PG_DIR:-/tmp/postrider-pgtest} and listens on
# 127.0.0.1:${POSTRIDER_PG_PORT:-55432} with trust authentication. When no
# PostgreSQL server binaries exist, Debian's postgresql package is installed.
set -euo pipefail
dir=${POSTRIDER_PG_DIR:-/tmp/postrider-pgtest}
port=${POSTRIDER_PG_PORT:-55432}
url="postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"

find_bin() {
	local d
	if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(readlink -f "$(command -v pg_ctl)")"
		return 0
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

bin=$(find_bin || true)
if [ -z "$bin" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "no PostgreSQL server binaries found and not root: install Debian's postgresql package" >&2
		exit 1
	fi
	echo "installing Debian's postgresql package..." >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq postgresql >&2
	bin=$(find_bin)
fi

# PostgreSQL refuses to run as root: use the postgres user (or nobody).
as_user() {
	if [ "$(id -u)" -eq 0 ]; then
		local u=postgres
		id -u postgres >/dev/null 2>&1 || u=nobody
		chown -R "$u" "$dir"
		runuser -u "$u" -- "$@"
	else
		"$@"
	fi
}

case "${1:-start}" in
start)
	mkdir -p "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		mkdir -p "$dir/data"
		as_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2 ||
			as_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >&2
	fi
	if ! as_user "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=400 -c shared_buffers=256MB -c synchronous_commit=on" \
			start >&2
	fi
	echo "$url"
	;;
stop)
	as_user "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
