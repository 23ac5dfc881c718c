#!/usr/bin/env bash
# Runs the whole Postrider test suite: formatting, vet, staticcheck, and every
# Go test with the race detector against a real PostgreSQL.
#
# PostgreSQL: POSTRIDER_TEST_DATABASE_URL if set; else the server on
# 127.0.0.1:5432 if one answers; else a throw-away cluster started by
# scripts/pgcluster.sh (installing Debian's postgresql package if needed).
# Mail clients used by the end-to-end tests (swaks, mutt, isync, fetchmail,
# getmail6, curl) and HAProxy (the cluster test runs the repository's
# deploy/haproxy.cfg) are installed from Debian's packages when missing and
# we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
export PATH="$PATH:$(go env GOPATH)/bin"

if [ -z "${POSTRIDER_TEST_DATABASE_URL:-}" ]; then
	if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
		export POSTRIDER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	else
		POSTRIDER_TEST_DATABASE_URL=$(bash scripts/pgcluster.sh start | tail -n 1)
		export POSTRIDER_TEST_DATABASE_URL
	fi
fi
echo "== PostgreSQL: ${POSTRIDER_TEST_DATABASE_URL}"

need=()
for pair in swaks:swaks mutt:mutt mbsync:isync fetchmail:fetchmail getmail:getmail6 curl:curl python3:python3 haproxy:haproxy; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# swaks speaks TLS through these Perl modules, which it only recommends.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "== installing test clients: ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	else
		echo "== missing test clients (tests using them will skip): ${need[*]}"
	fi
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi
echo "== haproxy -c deploy/haproxy.cfg"
if command -v haproxy >/dev/null 2>&1; then
	# Outside Docker the node names do not resolve: HAProxy warns and
	# starts those servers disabled (init-addr none), which is valid.
	haproxy -c -q -f deploy/haproxy.cfg
else
	echo "haproxy missing: configuration not checked (the cluster test will skip)"
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
command -v staticcheck >/dev/null 2>&1 || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 30m ./... "$@"
