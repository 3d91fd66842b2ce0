#!/usr/bin/env bash
# The main job on a fresh machine: a local RustyVault (seeded), then gbo-fs mounted
# on it, then `ls -l` and a `cat` through the mount.
#
# Usage: scripts/demo.sh [MOUNTPOINT]      (default /run/gbo/secrets)
#        scripts/demo.sh stop [MOUNTPOINT]  unmount and stop the dev Vault
# State (Vault data, unseal keys 0600, .env with only VAULT_ADDR/VAULT_TOKEN,
# logs) lives in ./.gbo-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
STATE_DIR=${GBO_DEV_STATE:-./.gbo-dev}

if [ "${1:-}" = stop ]; then
  MOUNTPOINT=${2:-/run/gbo/secrets}
  [ -f "$STATE_DIR/gbo-fs.pid" ] && kill "$(cat "$STATE_DIR/gbo-fs.pid")" 2>/dev/null || true
  for _ in $(seq 50); do grep -q " $MOUNTPOINT " /proc/self/mountinfo || break; sleep 0.1; done
  scripts/rustyvault.sh stop "$STATE_DIR"
  exit 0
fi
MOUNTPOINT=${1:-/run/gbo/secrets}

if ! command -v fusermount3 >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
scripts/rustyvault.sh "$STATE_DIR"
cargo build --release --quiet
BIN=$PWD/target/release/gbo-fs

if grep -q " $MOUNTPOINT fuse" /proc/self/mountinfo 2>/dev/null || grep -q " $MOUNTPOINT " /proc/self/mountinfo; then
  echo "demo: $MOUNTPOINT is already mounted; run 'scripts/demo.sh stop' first" >&2
  exit 1
fi
umask 077
"$BIN" --env-file "$STATE_DIR/.env" mount "$MOUNTPOINT" >"$STATE_DIR/gbo-fs.log" 2>&1 &
echo $! >"$STATE_DIR/gbo-fs.pid"
for _ in $(seq 100); do
  if grep -q " $MOUNTPOINT " /proc/self/mountinfo && stat -f "$MOUNTPOINT" >/dev/null 2>&1; then break; fi
  kill -0 "$(cat "$STATE_DIR/gbo-fs.pid")" 2>/dev/null || { cat "$STATE_DIR/gbo-fs.log" >&2; exit 1; }
  sleep 0.1
done

echo "gbo-fs mounted at $MOUNTPOINT (log: $STATE_DIR/gbo-fs.log, pid $(cat "$STATE_DIR/gbo-fs.pid"))"
echo "\$ ls -l $MOUNTPOINT/gbo $MOUNTPOINT/gbo/llm"
ls -l "$MOUNTPOINT/gbo" "$MOUNTPOINT/gbo/llm"
echo "\$ cat $MOUNTPOINT/gbo/tables/host"
cat "$MOUNTPOINT/gbo/tables/host"; echo
echo "Stop with: scripts/demo.sh stop $MOUNTPOINT"
