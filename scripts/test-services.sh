#!/usr/bin/env bash
# Make sure the real servers and clients the tests need are installed: redis-server (Debian
# package), Chromium, the npm socket.io-client and playwright-core, and a MongoDB-compatible
# server (a mongod on PATH, else FerretDB built from source into .cache/, run by the tests on a
# private PostgreSQL cluster of Debian's postgresql package).
# Idempotent: a warm machine skips everything.
set -euo pipefail
cd "$(dirname "$0")/.."

FERRETDB_VERSION=v1.24.2
CACHE="$PWD/.cache"

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "test-services: installing redis-server" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    # The package starts a system-wide server on 6379; tests start their own on free ports.
    (service redis-server stop || true) >/dev/null 2>&1
  else
    echo "test-services: redis-server is missing and this user cannot install it" >&2
    exit 1
  fi
fi

# The production topology's tools: nginx (make cluster), promtool (alert rules) and
# docker-compose (validating the compose file), and wrk (benchmarks). Their packages start
# system services; stop them.
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# PostgreSQL under FerretDB (not needed when a mongod is on PATH): the server binaries and the
# postgres user it runs as.
if ! command -v mongod >/dev/null 2>&1; then
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && id postgres >/dev/null 2>&1 \
    || missing+=(postgresql)
fi
# Headless Chromium for the console's browser test (driven by playwright-core).
[ -x /usr/lib/chromium/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test-services: installing ${missing[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # postgresql's package also creates and starts a cluster on 5432; the tests run their own.
    for service in nginx prometheus prometheus-node-exporter postgresql; do
      (service "$service" stop || true) >/dev/null 2>&1
    done
  else
    echo "test-services: missing ${missing[*]} and this user cannot install them" >&2
    exit 1
  fi
fi

# The stock JavaScript socket.io-client (and playwright-core) for the interop and browser
# tests, from the committed lock files; the same for the benchmarks' connection clients.
for dir in tests/js bench/js; do
  if [ ! -d "$dir/node_modules/socket.io-client" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    command -v npm >/dev/null 2>&1 || { echo "test-services: npm is missing (Node.js 20)" >&2; exit 1; }
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
  fi
done

if command -v mongod >/dev/null 2>&1; then
  exit 0
fi
# FerretDB writes back whole documents, so two overlapping updates of one document lose one
# change (MongoDB applies both); the patch serialises the updates of each document, making the
# test database as atomic per document as the production one. The cached build names both.
PATCH=devstack/ferretdb-atomic-updates.patch
BUILD="$FERRETDB_VERSION+$(sha256sum "$PATCH" | cut -c1-16)"
if [ -x "$CACHE/bin/ferretdb" ] && [ "$(cat "$CACHE/bin/ferretdb.version" 2>/dev/null)" = "$BUILD" ]; then
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "test-services: neither mongod nor go is available" >&2; exit 1; }
echo "test-services: building FerretDB $BUILD (once; cached in .cache/)" >&2
export GOPATH="$CACHE/go" GOFLAGS=-modcacherw
src_dir=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
work="$CACHE/ferretdb-src"
rm -rf "$work"
cp -r "$src_dir" "$work"
chmod -R u+w "$work"
(cd "$work" && git apply -p1 "$OLDPWD/$PATCH")
# A module download has no git metadata; FerretDB reads its version from this file.
echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
mkdir -p "$CACHE/bin"
(cd "$work" && go build -o "$CACHE/bin/ferretdb" ./cmd/ferretdb)
echo "$BUILD" > "$CACHE/bin/ferretdb.version"
rm -rf "$work"
