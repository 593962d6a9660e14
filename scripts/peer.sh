#!/usr/bin/env bash
# Build the peer B12 measures against, Centrifugo, from the Go module proxy into the
# git-ignored cache (.cache/peer), as the test database is built. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

CENTRIFUGO_VERSION=v6.9.1
CACHE="$PWD/.cache"
BIN="$CACHE/peer/bin"

if [ -x "$BIN/centrifugo" ] && [ "$(cat "$BIN/centrifugo.version" 2>/dev/null)" = "$CENTRIFUGO_VERSION" ]; then
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "peer: go is needed to build Centrifugo" >&2; exit 1; }
echo "peer: building Centrifugo $CENTRIFUGO_VERSION (once; cached in .cache/peer)" >&2
mkdir -p "$BIN"
GOPATH="$CACHE/go" GOFLAGS=-modcacherw GOBIN="$BIN" \
  go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
echo "$CENTRIFUGO_VERSION" > "$BIN/centrifugo.version"
