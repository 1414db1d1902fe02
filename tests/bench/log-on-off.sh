#!/usr/bin/env bash
# log-on-off.sh — request throughput of Sekisho with its access log on against the same
# binary with the log off (issue 5's goal: on ÷ off ≥ 0.95). Not a timed test.
#
#   tests/bench/log-on-off.sh                     # build (release), 6 interleaved rounds
#   ROUNDS=2 DURATION=3 SKIP_BUILD=1 RESULTS_MD=/tmp/x.md tests/bench/log-on-off.sh
#
# "on":  the policy of tests/bench/sekisho.toml.tmpl as it is: every response waits until
#        its record is chained and fsynced with its batch (group commit), log_dir on the
#        disk under SCRATCH (refused if that is a tmpfs: fsync must cost what it costs).
# "off": the same binary and policy plus `[log] danger_disable_audit = true` (a lint error;
#        `sekisho run` takes it only with SEKISHO_DANGER_BENCHMARK=1): no record at all.
# Both run at once on SERVER_CPU behind the same nginx upstream (static /1k), each with its
# own port; loadgen (tests/bench/loadgen: TLS 1.3 + client certificate) on CLIENT_CPU drives
# one of them at a time, keep-alive, CONNS connections. Rounds alternate the order (on/off,
# off/on, …) and the ratio is taken per round, then the median, so drift on this shared
# machine cancels out. The log written by "on" is checked with `sekisho log verify` after.
#
# Knobs (env): ROUNDS=6 DURATION=8 WARMUP=2 CONNS=32 PATH_=/1k SERVER_CPU=0 CLIENT_CPU=1
#   ON_LOG='public_waits_for_fsync = false'  ([log] lines for "on" only, to measure a choice)
#   SCRATCH=/tmp/sekisho-bench-log  CARGO_TARGET_DIR=/work/target-audit  SKIP_BUILD=0
#   RESULTS_MD=tests/bench/RESULTS.md (appended to)
set -Eeuo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-audit}
SCRATCH=${SCRATCH:-/tmp/sekisho-bench-log}
ROUNDS=${ROUNDS:-6} DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} CONNS=${CONNS:-32} PATH_=${PATH_:-/1k}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
ON_LOG=${ON_LOG:-}
RESULTS_MD=${RESULTS_MD:-$BENCH/RESULTS.md}
SNI=gw.test

log() { printf '[%(%H:%M:%S)T] log-on-off: %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for tool in openssl nginx envsubst taskset curl python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

WORK=$SCRATCH/work
rm -rf "$WORK"; mkdir -p "$WORK"/{pki,logs,conf,www,tmp,run}
chmod 777 "$WORK/tmp"
[[ $(stat -f -c %T "$WORK") != tmpfs ]] || die "$WORK is on a tmpfs: the log must be on a real disk"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# ------------------------------------------------------------------ build
if [[ $SKIP_BUILD != 1 ]]; then
  log "building sekisho (release) into $CARGO_TARGET_DIR"
  (cd "$REPO" && cargo build --release --locked -p sekisho)
fi
SEKISHO=$CARGO_TARGET_DIR/release/sekisho
[[ -x $SEKISHO ]] || die "no binary at $SEKISHO"
LOADGEN=$SCRATCH/loadgen-target/release/loadgen
if [[ ! -x $LOADGEN ]]; then
  log "building loadgen (release)"
  (cd "$BENCH/loadgen" && CARGO_TARGET_DIR="$SCRATCH/loadgen-target" cargo build --release --locked -q)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ------------------------------------------------------------------ PKI (throwaway, P-256)
P=$WORK/pki
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
(
  cd "$P"
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=Bench Server CA" -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  key server.key
  openssl req -new -key server.key -subj "/CN=$SNI" -out server.csr
  printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$SNI" >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 -extfile server.ext -out server.pem 2>/dev/null
  key device-ca.key
  openssl req -x509 -new -key device-ca.key -sha256 -days 30 -subj "/O=Bench/CN=Bench Device CA" -out device-ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  key client.key
  openssl req -new -key client.key -subj "/O=Bench/CN=device-001" -out client.csr
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA device-ca.pem -CAkey device-ca.key -CAcreateserial -days 30 -sha256 -extfile client.ext -out client.pem 2>/dev/null
)

# ------------------------------------------------------------------ upstream (nginx, static)
head -c 768 /dev/urandom | base64 -w0 >"$WORK/www/1k"
chmod -R a+rX "$WORK/www"
UP_PORT=$(free_port)
cat >"$WORK/conf/upstream.conf" <<EOF
worker_processes 1;
user nobody nogroup;
pid $WORK/run/upstream.pid;
error_log $WORK/logs/upstream.error.log warn;
events { worker_connections 16384; }
http {
  client_body_temp_path $WORK/tmp/body; proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fcgi; uwsgi_temp_path $WORK/tmp/uwsgi; scgi_temp_path $WORK/tmp/scgi;
  default_type application/octet-stream; sendfile on; tcp_nodelay on;
  keepalive_timeout 75s; keepalive_requests 1000000; access_log off;
  server { listen 127.0.0.1:$UP_PORT backlog=4096; root $WORK/www; location / { } }
}
EOF
chmod -R a+rX "$WORK/www"
taskset -c "$SERVER_CPU" nginx -c "$WORK/conf/upstream.conf" -g 'daemon off;' 2>>"$WORK/logs/upstream.err" &
PIDS+=($!)

# ------------------------------------------------------------------ the two gateways
declare -A PORT PID
start_gateway() { # name
  local name=$1 d=$WORK/$1
  mkdir -p "$d/ca" "$d/state" "$d/log"
  cp "$P/device-ca.pem" "$P/device-ca.key" "$d/ca/"
  chmod 600 "$d/ca/device-ca.key"
  "$SEKISHO" ca refresh-crl --ca "$d/ca" >/dev/null 2>&1 || die "$name: sekisho ca refresh-crl failed"
  PORT[$name]=$(free_port)
  GW_LISTEN=127.0.0.1:${PORT[$name]} GW_CERT=$P/server.pem GW_KEY=$P/server.key GW_CLIENT_CA=$P/device-ca.pem \
    GW_UPSTREAM=http://127.0.0.1:$UP_PORT GW_ALLOW_CIDR=127.0.0.1/32 SEKISHO_BENCH_DIR=$d \
    envsubst <"$BENCH/sekisho.toml.tmpl" >"$d/policy.toml"
  local env=()
  if [[ $name == on && -n $ON_LOG ]]; then
    printf '\n[log]\n%s\n' "$ON_LOG" >>"$d/policy.toml"
  fi
  if [[ $name == off ]]; then
    printf '\n[log]\ndanger_disable_audit = true\n' >>"$d/policy.toml"
    env=(SEKISHO_DANGER_BENCHMARK=1)
  fi
  env "${env[@]}" taskset -c "$SERVER_CPU" "$SEKISHO" run --policy "$d/policy.toml" 2>"$WORK/logs/$name.err" &
  PID[$name]=$!
  PIDS+=("${PID[$name]}")
  for _ in $(seq 200); do
    grep -q 'sekisho: ready' "$WORK/logs/$name.err" 2>/dev/null && break
    kill -0 "${PID[$name]}" 2>/dev/null || { cat "$WORK/logs/$name.err" >&2; die "$name exited"; }
    sleep 0.05
  done
  grep -q 'sekisho: ready' "$WORK/logs/$name.err" || die "$name not ready"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key" \
    --resolve "$SNI:${PORT[$name]}:127.0.0.1" "https://$SNI:${PORT[$name]}$PATH_") || true
  [[ $code == 200 ]] || { cat "$WORK/logs/$name.err" >&2; die "$name answered $code to GET $PATH_"; }
  log "started $name (pid ${PID[$name]}, port ${PORT[$name]})"
}
start_gateway on
start_gateway off
grep -q 'DANGER: the access log is off' "$WORK/logs/off.err" || die "the off gateway does not say its log is off"

# ------------------------------------------------------------------ rounds
RAW=$WORK/raw.txt
: >"$RAW"
run() { # round name
  local line
  line=$(taskset -c "$CLIENT_CPU" "$LOADGEN" --url "https://127.0.0.1:${PORT[$2]}$PATH_" -c "$CONNS" -d "$DURATION" -w "$WARMUP" \
    -m keepalive --ca "$P/ca.pem" --sni "$SNI" --cert "$P/client.pem" --key "$P/client.key" \
    --watch "peer=${PID[$2]}" --label "$2" 2>>"$WORK/logs/loadgen.err") || die "loadgen failed ($2)"
  echo "$line round=$1" | tee -a "$RAW" >&2
}
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then run "$r" on; run "$r" off; else run "$r" off; run "$r" on; fi
done

# The log that was on: every request recorded, and it verifies.
kill -TERM "${PID[on]}" "${PID[off]}"
wait "${PID[on]}" "${PID[off]}" 2>/dev/null || true
verify=$("$SEKISHO" log verify "$WORK/on/log" 2>&1) || die "the on log does not verify: $verify"
records=$(echo "$verify" | grep -oE '[0-9]+ record\(s\)' | head -1)
off_files=$(find "$WORK/off/log" -type f | wc -l)

# ------------------------------------------------------------------ results
summary=$(python3 - "$RAW" <<'PY'
import sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    rows.setdefault(kv["round"], {})[kv["label"]] = kv
f = float
ratios = [f(r["on"]["rps"]) / f(r["off"]["rps"]) for r in rows.values() if "on" in r and "off" in r]
cpu = [f(r["on"]["peer_cpu_us_per_req"]) / f(r["off"]["peer_cpu_us_per_req"]) for r in rows.values() if "on" in r and "off" in r]
med = lambda k, t: st.median(f(r[t][k]) for r in rows.values() if t in r)
print(f"| log on, req/s | log off, req/s | on ÷ off (median of {len(ratios)} paired rounds; min–max) | goal ≥ 0.95 | CPU µs/req on / off | p50 / p99 µs on | p50 / p99 µs off |")
print("|---|---|---|---|---|---|---|")
print(f"| {med('rps','on'):,.0f} | {med('rps','off'):,.0f} | **{st.median(ratios):.3f}** ({min(ratios):.3f}–{max(ratios):.3f}) | {'met' if st.median(ratios) >= 0.95 else 'not met'} "
      f"| {med('peer_cpu_us_per_req','on'):.1f} / {med('peer_cpu_us_per_req','off'):.1f} | {med('p50_us','on'):,.0f} / {med('p99_us','on'):,.0f} | {med('p50_us','off'):,.0f} / {med('p99_us','off'):,.0f} |")
PY
)
commit=$(git -C "$REPO" rev-parse --short HEAD)
dirty=$(git -C "$REPO" status --porcelain -- policy gateway Cargo.toml Cargo.lock | wc -l)
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
{
  echo
  echo "## Access log on vs off (issue 5), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r); log on $(df --output=source "$WORK" | tail -1) ($(stat -f -c %T "$WORK")); shared with other jobs"
  echo "- Measured: \`$commit\`$( ((dirty)) && echo " plus uncommitted changes under policy/ or gateway/")"
  echo "- Reproduce: \`ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS${ON_LOG:+ ON_LOG='$ON_LOG'} tests/bench/log-on-off.sh\`"
  echo "- Keep-alive GET $PATH_ over TLS 1.3 with a client certificate, $CONNS connections, ${DURATION}s per run after ${WARMUP}s warm-up; gateways on CPU $SERVER_CPU with the nginx upstream, loadgen on CPU $CLIENT_CPU; rounds alternate the order"
  if [[ -z $ON_LOG ]]; then
    echo "- On (the defaults): every response waited for its record to be fsynced with its batch; the log afterwards: \`sekisho log verify\` OK, $records. Off: \`danger_disable_audit\`, $off_files file(s) in its log_dir"
  else
    echo "- On, with \`[log] $ON_LOG\`: the log afterwards: \`sekisho log verify\` OK, $records. Off: \`danger_disable_audit\`, $off_files file(s) in its log_dir"
  fi
  echo
  echo "$summary"
} | tee -a "$RESULTS_MD"
log "appended to $RESULTS_MD; raw data in $RAW"
