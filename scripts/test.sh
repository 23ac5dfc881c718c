#!/usr/bin/env bash
# Runs the whole Postrider test suite: formatting, vet, staticcheck, and every
# Go test with the race detector against a real PostgreSQL.
#
# PostgreSQL: POSTRIDER_TEST_DATABASE_URL if set; else the server on
# 127.0.0.1:5432 if one answers; else a throw-away cluster started by
# scripts/pgcluster.sh (installing Debian's postgresql package if needed).
# Mail clients used by the end-to-end tests (swaks, mutt, isync, fetchmail,
# getmail6, curl), HAProxy (the cluster test runs the repository's
# deploy/haproxy.cfg) and docker-compose are installed from Debian's packages
# when missing and we are root.
#
# Deployment files: docker-compose.yml through `docker compose config` (or
# docker-compose), the Kubernetes base through `kubectl kustomize` (or
# kustomize, installed through the Go module proxy when neither is there),
# deploy/haproxy.cfg through `haproxy -c`, and deploy/postrider.service
# through `systemd-analyze verify` when present.
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
# docker-compose.yml is checked with Compose (no Docker engine needed).
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
	need+=(docker-compose)
fi
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
echo "== go vet"
go vet ./...
echo "== staticcheck"
command -v staticcheck >/dev/null 2>&1 || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck ./...
echo "== deploy: docker-compose.yml"
if docker compose version >/dev/null 2>&1; then
	docker compose config -q
elif command -v docker-compose >/dev/null 2>&1; then
	docker-compose config -q
else
	echo "skipped: neither docker compose nor docker-compose is installed"
fi
echo "== deploy: haproxy.cfg"
if command -v haproxy >/dev/null 2>&1; then
	# Outside Docker the node names do not resolve: HAProxy warns and
	# starts those servers disabled (init-addr none), which is valid.
	haproxy -c -q -f deploy/haproxy.cfg
else
	echo "skipped: haproxy is not installed (the cluster tests will skip too)"
fi
echo "== deploy: Kubernetes base (kustomize)"
if command -v kubectl >/dev/null 2>&1; then
	kubectl kustomize deploy/kubernetes >/dev/null
else
	command -v kustomize >/dev/null 2>&1 || go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
	kustomize build deploy/kubernetes >/dev/null
fi
echo "== deploy: systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify wants ExecStart's binary to exist: point it at a fresh build.
	unitdir=$(mktemp -d)
	trap 'rm -rf "$unitdir"' EXIT
	go build -o "$unitdir/postrider" ./cmd/postrider
	sed "s#/usr/local/bin/postrider#$unitdir/postrider#g" deploy/postrider.service >"$unitdir/postrider.service"
	systemd-analyze verify "$unitdir/postrider.service"
else
	echo "skipped: systemd-analyze is not installed"
fi
echo "== go test -race"
go test -race -count=1 -timeout 30m ./... "$@"
