#!/usr/bin/env bash
# Interop check: a go-libp2p peer joins a private aNode mesh of two relays on loopback.
# Usage (from anywhere, after `npm ci`): bash test/interop/go-peer/run.sh [go-peer flags...]
# Needs Go (see go.mod); GOMODCACHE, GOCACHE, GOPROXY etc. are Go's own (override as usual).
# Keeps the run folder (logs, relay data) only when a step fails, or with KEEP=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
NODE="$ROOT/node_modules/.bin/node"
BIN="$HERE/go-peer" # gitignored
STEP=setup
RUN=$(mktemp -d "${TMPDIR:-/tmp}/anode-interop.XXXXXX")
pids=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "interop check FAILED at step: $STEP (exit $rc); logs in $RUN" >&2
  elif [ "${KEEP:-0}" = 1 ]; then
    echo "interop check passed; logs in $RUN"
  else
    rm -rf "$RUN"
    echo "interop check passed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "$*" >&2; exit 1; }

# Waits for "relay ready at <url>" in a relay's log and prints the URL.
wait_ready() {
  local log=$1 pid=$2 url
  for _ in $(seq 240); do
    url=$(grep -o 'relay ready at [^"]*' "$log" | head -n 1 | cut -d' ' -f4 || true)
    if [ -n "$url" ]; then
      echo "$url"
      return
    fi
    kill -0 "$pid" 2>/dev/null || fail "the relay exited; its log: $log"
    sleep 0.5
  done
  fail "the relay did not report ready within 120 s; its log: $log"
}

STEP="prerequisites"
[ -x "$NODE" ] || fail "$NODE not found: run npm ci in $ROOT first"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=/usr/local/go/bin:$PATH; fi
command -v go >/dev/null || fail "go not found: install Go $(sed -n 's/^go //p' "$HERE/go.mod") or later"

STEP="build the Go peer"
echo "== $STEP ($(go version))"
(cd "$HERE" && go build -o "$BIN" .)

STEP="make a network key"
(umask 077 && printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$RUN/swarm.key")

STEP="start relay A"
cd "$ROOT"
# Relay A logs at debug: the check below reads why it rejected each bad batch.
"$NODE" relay-node/bin/anode.ts relay --host 127.0.0.1 --port 0 --data-dir "$RUN/a" --log-level debug \
  --listen /ip4/127.0.0.1/tcp/0 --mesh-key-file "$RUN/swarm.key" >"$RUN/a.log" 2>&1 &
pids+=($!)
A=$(wait_ready "$RUN/a.log" "${pids[0]}")
AADDR=$("$NODE" -e 'fetch(process.argv[1] + "/v1/status").then((r) => r.json()).then((s) => console.log(s.node.multiaddrs[0]))' "$A")
[ -n "$AADDR" ] || fail "relay A has no mesh address"

STEP="start relay B"
"$NODE" relay-node/bin/anode.ts relay --host 127.0.0.1 --port 0 --data-dir "$RUN/b" \
  --listen /ip4/127.0.0.1/tcp/0 --bootstrap "$AADDR" --mesh-key-file "$RUN/swarm.key" >"$RUN/b.log" 2>&1 &
pids+=($!)
B=$(wait_ready "$RUN/b.log" "${pids[1]}")
echo "relay A $A ($AADDR), relay B $B"

STEP="go peer checks"
echo "== $STEP"
"$BIN" -key "$RUN/swarm.key" -dial-http "$A" -pub-http "$B" -check-http "$A,$B" "$@" | tee "$RUN/go-peer.log"

STEP="relay A's log"
echo "== $STEP"
# checkTooLarge: passed gossip validation, refused by the hub (a warning).
grep -q 'envelope from elsewhere refused' "$RUN/a.log" || fail "no 'envelope from elsewhere refused' in relay A's log"
# The rejections, each with its reason, at debug.
rejects=$(grep -c 'gossip batch rejected' "$RUN/a.log" || true)
[ "$rejects" -ge 12 ] || fail "relay A logged $rejects 'gossip batch rejected' lines, expected 12"
echo "relay A logged 'envelope from elsewhere refused' and $rejects 'gossip batch rejected' (reasons:)"
grep 'gossip batch rejected' "$RUN/a.log" | grep -o '"reason":"[^"]*"' | sed 's/^/  /'
