#!/usr/bin/env bash
# Owns the local RustyVault dev/CI server: install, start, init, unseal, mount KV v1 `gbo`, seed demo secrets.
#
# Usage:
#   scripts/rustyvault.sh [STATE_DIR]        set up (idempotent; default STATE_DIR: ./.gbo-dev)
#   scripts/rustyvault.sh stop [STATE_DIR]   stop the server started from STATE_DIR
#
# Environment:
#   GBO_DEV_PORT   listen port on 127.0.0.1 (default 8200)
#   RVAULT_BIN     rvault binary to use (default: rvault on PATH, else ~/.cargo/bin/rvault,
#                  else `cargo install rusty_vault --version 0.2.1 --locked`)
#
# STATE_DIR after a run:
#   rvault.hcl     server config          data/, work/   file storage, work dir
#   rvault.log     server log             rvault.pid     server pid
#   unseal-keys    VAULT_UNSEAL_KEY_1..5=<hex> (0600)
#   .env           VAULT_ADDR=... and VAULT_TOKEN=<root token> only (0600)
# The unseal keys and the root token are never printed.
set -euo pipefail

RV_CRATE=rusty_vault
RV_VERSION=0.2.1
SHARES=5
THRESHOLD=3
READY_TIMEOUT_S=30

log() { printf 'rustyvault.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cmd=up
case "${1:-}" in
  stop) cmd=stop; shift ;;
  start|up) shift ;;
  -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
[ "$#" -le 1 ] || die "usage: $0 [stop] [STATE_DIR]"
STATE_ARG=${1:-./.gbo-dev}

umask 077
mkdir -p "$STATE_ARG"
STATE_DIR=$(cd "$STATE_ARG" && pwd -P)
chmod 700 "$STATE_DIR"
CONFIG=$STATE_DIR/rvault.hcl
PID_FILE=$STATE_DIR/rvault.pid
LOG_FILE=$STATE_DIR/rvault.log
KEYS_FILE=$STATE_DIR/unseal-keys
ENV_FILE=$STATE_DIR/.env

# ---------- process helpers ----------

# Prints the pid from the pid file if that process is alive and is our rvault.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid=$(tr -dc '0-9' < "$PID_FILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must be rvault started with our config.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$CONFIG" || return 1
  printf '%s\n' "$pid"
}

stop_server() {
  local pid
  if ! pid=$(running_pid); then
    log "no rvault running for $STATE_DIR"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "rvault (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  log "stopped rvault (pid $pid)"
}

if [ "$cmd" = stop ]; then
  stop_server
  exit 0
fi

# ---------- prerequisites ----------

need_apt() {
  # Installs Debian packages when possible (root + apt-get); otherwise fails with a hint.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    die "please install: $*"
  fi
}

command -v curl >/dev/null 2>&1 || need_apt curl
command -v curl >/dev/null 2>&1 || die "curl is required"

find_rvault() {
  if [ -n "${RVAULT_BIN:-}" ]; then
    [ -x "$RVAULT_BIN" ] || die "RVAULT_BIN=$RVAULT_BIN is not an executable file"
    printf '%s\n' "$RVAULT_BIN"; return 0
  fi
  if command -v rvault >/dev/null 2>&1; then command -v rvault; return 0; fi
  local c
  for c in ${CARGO_INSTALL_ROOT:+"$CARGO_INSTALL_ROOT/bin/rvault"} \
      "${CARGO_HOME:-$HOME/.cargo}/bin/rvault" "$HOME/.cargo/bin/rvault"; do
    if [ -x "$c" ]; then printf '%s\n' "$c"; return 0; fi
  done
  return 1
}

if ! RVAULT=$(find_rvault); then
  command -v cargo >/dev/null 2>&1 || die "rvault is not installed and cargo is missing (install Rust first)"
  # rusty_vault links OpenSSL through openssl-sys: needs pkg-config and the OpenSSL headers.
  if ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; }; then
    need_apt pkg-config libssl-dev
  fi
  log "installing $RV_CRATE $RV_VERSION with cargo (several minutes on 2 cores)"
  if ! cargo install "$RV_CRATE" --version "$RV_VERSION" --locked; then
    log "cargo install --locked failed; retrying without --locked"
    cargo install "$RV_CRATE" --version "$RV_VERSION"
  fi
  RVAULT=$(find_rvault) || die "rvault still not found after cargo install"
fi

# ---------- HTTP helpers (token and keys go through files/pipes, never argv) ----------

PORT=${GBO_DEV_PORT:-8200}
if running_pid >/dev/null && [ -f "$CONFIG" ]; then
  # Reuse the running server's port even if GBO_DEV_PORT changed.
  running_port=$(sed -n 's/.*address *= *"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$CONFIG" | head -n1)
  if [ -n "$running_port" ] && [ "$running_port" != "$PORT" ]; then
    log "rvault is already running on port $running_port (not $PORT); reusing it"
    PORT=$running_port
  fi
fi
ADDR=http://127.0.0.1:$PORT
TOKEN=

# api METHOD PATH [BODY] → sets HTTP_STATUS (000: no answer) and API_BODY. Sends the root token
# if TOKEN is set. Token and body travel through a pipe / process substitution, never argv.
HTTP_STATUS=
API_BODY=
token_header() { [ -z "$TOKEN" ] || printf 'X-Vault-Token: %s\n' "$TOKEN"; }
api() {
  local method=$1 path=$2 body=${3-} out
  if [ -n "$body" ]; then
    out=$(printf '%s' "$body" | curl -s -X "$method" --max-time "${API_TIMEOUT:-10}" -w '\n%{http_code}' \
      -H @<(token_header) -H 'Content-Type: application/json' --data-binary @- "$ADDR/v1/$path") || out=$'\n000'
  else
    out=$(curl -s -X "$method" --max-time "${API_TIMEOUT:-10}" -w '\n%{http_code}' -H @<(token_header) "$ADDR/v1/$path") || out=$'\n000'
  fi
  HTTP_STATUS=${out##*$'\n'}
  API_BODY=${out%$'\n'*}
}

answers() { API_TIMEOUT=2 api GET sys/init && [ "$HTTP_STATUS" = 200 ] && [[ $API_BODY == *'"initialized"'* ]]; }

# ---------- start ----------

write_config() {
  cat > "$CONFIG" <<EOF
storage "file" {
  path = "$STATE_DIR/data"
}
listener "tcp" {
  address     = "127.0.0.1:$PORT"
  tls_disable = true
}
api_addr  = "$ADDR"
log_level = "info"
work_dir  = "$STATE_DIR/work"
EOF
}

if pid=$(running_pid); then
  answers || die "rvault (pid $pid) is running but does not answer on $ADDR; see $LOG_FILE"
  log "reusing running rvault (pid $pid) on $ADDR"
else
  if answers; then
    die "something else already answers on $ADDR; stop it or set GBO_DEV_PORT"
  fi
  write_config
  mkdir -p "$STATE_DIR/data" "$STATE_DIR/work"
  printf '\n=== %s starting rvault on %s\n' "$(date -u +%FT%TZ)" "$ADDR" >> "$LOG_FILE"
  # setsid: detach from the caller's terminal/process group; with no job control the
  # background child is not a group leader, so setsid execs in place and $! is rvault.
  setsid "$RVAULT" server --config "$CONFIG" < /dev/null >> "$LOG_FILE" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" > "$PID_FILE"
  deadline=$((SECONDS + READY_TIMEOUT_S))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      grep -iE 'error|panic' "$LOG_FILE" | tail -n 5 >&2 || true
      die "rvault exited during start-up (port $PORT in use?); see $LOG_FILE"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "rvault did not answer on $ADDR within ${READY_TIMEOUT_S}s; see $LOG_FILE"
    fi
    sleep 0.1
  done
  log "started rvault (pid $pid) on $ADDR"
fi

# ---------- init ----------

api GET sys/init
if [[ $API_BODY == *'"initialized":false'* ]]; then
  [ ! -s "$KEYS_FILE" ] || die "$KEYS_FILE exists but the storage is not initialised; move it away first"
  api PUT sys/init "{\"secret_shares\":$SHARES,\"secret_threshold\":$THRESHOLD}"
  [ "$HTTP_STATUS" = 200 ] || die "sys/init failed: HTTP $HTTP_STATUS"
  init_json=$API_BODY
  API_BODY=
  root=$(printf '%s' "$init_json" | grep -o '"root_token":"[^"]*"' | sed 's/.*:"\(.*\)"/\1/')
  mapfile -t keys < <(printf '%s' "$init_json" | grep -o '"keys":\[[^]]*\]' | grep -oE '[0-9a-fA-F]{16,}')
  unset init_json
  if [ -z "$root" ] || [ "${#keys[@]}" -ne "$SHARES" ]; then
    die "unexpected sys/init answer (no token or not $SHARES keys)"
  fi
  tmp=$(mktemp "$STATE_DIR/.unseal-keys.XXXXXX")
  for i in "${!keys[@]}"; do printf 'VAULT_UNSEAL_KEY_%d=%s\n' $((i + 1)) "${keys[$i]}"; done > "$tmp"
  chmod 600 "$tmp"; mv -f "$tmp" "$KEYS_FILE"
  tmp=$(mktemp "$STATE_DIR/.env.XXXXXX")
  printf 'VAULT_ADDR=%s\nVAULT_TOKEN=%s\n' "$ADDR" "$root" > "$tmp"
  chmod 600 "$tmp"; mv -f "$tmp" "$ENV_FILE"
  unset keys root
  log "initialised ($SHARES key shares, threshold $THRESHOLD); keys in $KEYS_FILE"
elif [[ $API_BODY != *'"initialized":true'* ]]; then
  die "unexpected sys/init answer: HTTP $HTTP_STATUS"
fi

[ -s "$KEYS_FILE" ] || die "rvault is initialised but $KEYS_FILE is missing: cannot unseal"
[ -s "$ENV_FILE" ] || die "rvault is initialised but $ENV_FILE (root token) is missing"
TOKEN=$(sed -n 's/^VAULT_TOKEN=//p' "$ENV_FILE" | head -n1)
[ -n "$TOKEN" ] || die "no VAULT_TOKEN in $ENV_FILE"
chmod 600 "$KEYS_FILE" "$ENV_FILE"

# ---------- unseal ----------

api GET sys/seal-status
if [[ $API_BODY == *'"sealed":true'* ]]; then
  while IFS='=' read -r name key; do
    case "$name" in VAULT_UNSEAL_KEY_*) ;; *) continue ;; esac
    api PUT sys/unseal "{\"key\":\"$key\"}"
    [ "$HTTP_STATUS" = 200 ] || die "unseal with $name failed: HTTP $HTTP_STATUS $API_BODY"
    if [[ $API_BODY == *'"sealed":false'* ]]; then break; fi
  done < "$KEYS_FILE"
  unset key
  api GET sys/seal-status
  [[ $API_BODY == *'"sealed":false'* ]] || die "still sealed after using the keys in $KEYS_FILE"
  log "unsealed"
elif [[ $API_BODY != *'"sealed":false'* ]]; then
  die "unexpected sys/seal-status answer: HTTP $HTTP_STATUS $API_BODY"
fi

# ---------- mount + seeds ----------

api GET auth/token/lookup-self
[ "$HTTP_STATUS" = 200 ] || die "the VAULT_TOKEN in $ENV_FILE is not accepted (HTTP $HTTP_STATUS)"

api GET sys/mounts
[ "$HTTP_STATUS" = 200 ] || die "sys/mounts: HTTP $HTTP_STATUS"
if [[ $API_BODY != *'"gbo/":'* ]]; then
  api POST sys/mounts/gbo '{"type":"kv","description":"gbo-fs demo secrets (KV v1)"}'
  [ "$HTTP_STATUS" = 204 ] || [ "$HTTP_STATUS" = 200 ] || die "enabling KV mount gbo failed: HTTP $HTTP_STATUS $API_BODY"
  log "enabled KV v1 mount gbo/"
fi

# Random-looking demo values: URL-safe base64 of urandom bytes.
rnd() { head -c "${1:-24}" /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'; }
alnum() { LC_ALL=C tr -dc 'A-Z0-9' < /dev/urandom | head -c "${1:-20}"; }

seed() { # seed PATH JSON — writes only if the secret does not exist yet
  local path=$1 json=$2
  api GET "gbo/$path"
  case "$HTTP_STATUS" in
    200) return 0 ;;
    404) ;;
    *) die "reading gbo/$path: HTTP $HTTP_STATUS" ;;
  esac
  api POST "gbo/$path" "$json"
  [ "$HTTP_STATUS" = 204 ] || [ "$HTTP_STATUS" = 200 ] || die "writing gbo/$path: HTTP $HTTP_STATUS $API_BODY"
  log "seeded gbo/$path"
}

seed llm "{\"openai_key\":\"sk-demo-$(rnd 36)\",\"anthropic_key\":\"sk-ant-demo-$(rnd 48)\"}"
seed tables "{\"host\":\"127.0.0.1\",\"port\":\"5432\",\"database\":\"gbo\",\"username\":\"gbo\",\"password\":\"$(rnd 24)\"}"
seed drive "{\"endpoint\":\"http://127.0.0.1:9000\",\"accesskey\":\"$(alnum 20)\",\"secret\":\"$(rnd 30)\"}"
seed cache "{\"host\":\"127.0.0.1\",\"port\":\"6379\",\"password\":\"$(rnd 24)\"}"
seed directory "{\"url\":\"http://127.0.0.1:8080\",\"project_id\":\"gbo-demo\",\"client_id\":\"gbo-demo-client\",\"client_secret\":\"$(rnd 32)\"}"
seed encryption "{\"master_key\":\"$(head -c 32 /dev/urandom | base64 | tr -d '\n')\"}"
API_BODY=

cat >&2 <<EOF
rustyvault.sh: RustyVault $RV_VERSION is up, unsealed, KV v1 mount gbo/ seeded
  address      $ADDR
  binary       $RVAULT
  pid          $(cat "$PID_FILE") ($PID_FILE)
  log          $LOG_FILE
  storage      $STATE_DIR/data
  env (0600)   $ENV_FILE   (VAULT_ADDR, VAULT_TOKEN: set -a; . $ENV_FILE; set +a)
  keys (0600)  $KEYS_FILE
  stop         $0 stop $STATE_DIR
EOF
