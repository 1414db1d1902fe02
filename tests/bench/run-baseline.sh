#!/usr/bin/env bash
# run-baseline.sh — admin-access gateway: peer baseline, reproducible from scratch.
#
# Installs the peers (Debian packages), builds the load generator (./loadgen, Rust),
# creates a test PKI, starts a fixed upstream and the peers on 127.0.0.1, measures
# every target in interleaved rounds (A B C A B C ...), stops everything it started
# (by PID) and prints Markdown tables of medians and ratios to "direct".
#
# Targets (all on 127.0.0.1):
#   direct        plain HTTP straight to the upstream           :18080  (the "limit")
#   nginx-tls     nginx, TLS 1.3, NO client cert                 :18444  (isolates mTLS cost)
#   nginx-mtls    nginx, TLS 1.3 + client cert required          :18443
#   haproxy-mtls  haproxy, TLS 1.3 + client cert required        :18445
#   caddy-mtls    caddy, TLS 1.3 + client cert require_and_verify:18446
#   gateway       your binary, if GATEWAY_CMD is set             :18447 (GATEWAY_PORT)
# Every proxy: IP allowlist (ALLOW_CIDR), cookie-presence check (401 without it),
# device identity forwarded to the upstream, one access-log line per request to a file,
# keep-alive pool to the upstream.
#
# Scenarios:
#   ka1k   keep-alive, GET /1k  (1 KiB body), CONNS connections, closed loop
#   ka64k  keep-alive, GET /64k (64 KiB body)
#   hs     new TCP+TLS connection per request (full handshake, no resumption), /1k, HS_CONNS workers
#   c1     keep-alive, /1k, ONE connection: per-request latency a single admin sees
#   hs1    new connection per request, ONE worker: connect+handshake+request latency of one admin
#   hsr    (optional) like hs but with TLS session resumption allowed
#
# Plugging in the gateway (runs in the foreground; the script backgrounds, pins and
# stops it). The command is run with `bash -c "exec $GATEWAY_CMD"`, with these
# variables exported:
#   GW_LISTEN=127.0.0.1:$GATEWAY_PORT  GW_PORT  GW_CERT  GW_KEY  GW_CERT_KEY_PEM
#   GW_CLIENT_CA  GW_UPSTREAM=http://127.0.0.1:18080  GW_UPSTREAM_HOSTPORT=127.0.0.1:18080
#   GW_ALLOW_CIDR  GW_ACCESS_LOG
#   GW_LOG_KEY (32 random bytes, hex, for signed log lines)  GW_COOKIE_NAME
#   GW_CONFIG (= rendered GATEWAY_CONFIG_TEMPLATE, if given; ${VAR}s via envsubst)
# e.g.
#   GATEWAY_CMD='/path/to/gateway --config $GW_CONFIG' \
#   GATEWAY_CONFIG_TEMPLATE=/path/to/gateway.toml.tmpl \
#   GATEWAY_COOKIE='admin_session=<a valid signed session>' ./run-baseline.sh
#
# Knobs (env): ROUNDS=3 DURATION=10 WARMUP=3 CONNS=32 HS_CONNS=32 SCENARIOS="ka1k ka64k hs c1 hs1"
#   TARGETS="direct nginx-tls nginx-mtls haproxy-mtls caddy-mtls" (+gateway automatically)
#   SERVER_CPU=0 CLIENT_CPU=1 KEY_ALG=ec|rsa SKIP_INSTALL=0 WRK_CHECK=1 PAUSE=1
#   QUIET_MAX_PCT=25 QUIET_TIMEOUT=15 (wait for other tenants' CPU use to drop before each run)
#   NICE=0 (negative: run servers and loadgen at higher priority than other tenants)
#   ALLOW_CIDR=127.0.0.0/8 DENY_PROBE_IP= (a 127.x address outside ALLOW_CIDR to test deny)
#   SCRATCH=/tmp/sekisho-bench (WORK=$SCRATCH/work RESULTS=$SCRATCH/results/<timestamp>) REF_TARGET=nginx-mtls
#   GATEWAY_COOKIE_CHECK=1 (0: the gateway is not expected to refuse a request without the
#     cookie, e.g. a public route; its "no cookie" column is then reported, not judged)
#   GATEWAY_COOKIE_FILE=path (set: after the gateway starts, wait for this file and add its
#     content, e.g. '__Host-sekisho=<token>', to GATEWAY_COOKIE: a session the gateway made)
# (Sekisho copy of /work/shared/bench/run-baseline.sh; the only changes are GATEWAY_COOKIE_CHECK
# and GATEWAY_COOKIE_FILE.)
# Re-print the tables of a finished run:  ./run-baseline.sh summarize results/<dir>
set -Eeuo pipefail

BASE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRATCH=${SCRATCH:-/tmp/sekisho-bench}
WORK=${WORK:-$SCRATCH/work}
RESULTS=${RESULTS:-$SCRATCH/results/$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-32}
HS_CONNS=${HS_CONNS:-$CONNS}
SCENARIOS=${SCENARIOS:-"ka1k ka64k hs c1 hs1"}
TARGETS=${TARGETS:-"direct nginx-tls nginx-mtls haproxy-mtls caddy-mtls"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEY_ALG=${KEY_ALG:-ec}
SKIP_INSTALL=${SKIP_INSTALL:-0}
WRK_CHECK=${WRK_CHECK:-1}
PAUSE=${PAUSE:-1}
QUIET_MAX_PCT=${QUIET_MAX_PCT:-25}
QUIET_TIMEOUT=${QUIET_TIMEOUT:-15}
NICE=${NICE:-0}                     # e.g. -10: give our servers+loadgen priority over other tenants
NICE_CMD=""; if [[ $NICE != 0 ]]; then NICE_CMD="nice -n $NICE"; fi
ALLOW_CIDR=${ALLOW_CIDR:-127.0.0.0/8}
DENY_PROBE_IP=${DENY_PROBE_IP:-}
COOKIE_NAME=${COOKIE_NAME:-admin_session}
GATEWAY_COOKIE=${GATEWAY_COOKIE:-$COOKIE_NAME=bench-session-0123456789abcdef}
GATEWAY_CMD=${GATEWAY_CMD:-}
GATEWAY_CONFIG_TEMPLATE=${GATEWAY_CONFIG_TEMPLATE:-}
GATEWAY_PORT=${GATEWAY_PORT:-18447}
GATEWAY_NAME=${GATEWAY_NAME:-gateway}
GATEWAY_COOKIE_CHECK=${GATEWAY_COOKIE_CHECK:-1}
REF_TARGET=${REF_TARGET:-nginx-mtls}   # second ratio column: paired (same round) ratio to this peer
UP_PORT=18080
SNI=gw.test
PY=/usr/bin/python3
LOADGEN=$SCRATCH/loadgen-target/release/loadgen

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ process bookkeeping
declare -a STARTED_PIDS=()
cleanup() {
  local rc=$?
  set +e
  if ((${#STARTED_PIDS[@]})); then
    log "stopping ${#STARTED_PIDS[@]} process(es) we started: ${STARTED_PIDS[*]}"
    for p in "${STARTED_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 50); do
      local alive=0
      for p in "${STARTED_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    for p in "${STARTED_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
    for p in "${STARTED_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pid + all descendants
tree_pids() {
  local p=$1 c
  echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
}
# sum of RSS / PSS (kB) over a process tree
tree_rss() { local s=0 p; for p in $(tree_pids "$1"); do s=$((s + $(awk '{print $2}' /proc/$p/statm 2>/dev/null || echo 0) * 4)); done; echo $s; }
tree_pss() { local s=0 p v; for p in $(tree_pids "$1"); do v=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }

port_busy() { ss -Hltn "sport = :$1" | grep -q .; }
wait_port() {
  local port=$1 pid=$2 i
  for i in $(seq 150); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "process $pid for port $port died (see $WORK/logs)"
    sleep 0.2
  done
  die "port $port did not open"
}

# start_bg NAME PORT CMD...  — pinned to SERVER_CPU, stdout/stderr to $WORK/logs/NAME.{out,err}
declare -A T_PID T_URL T_TLS T_MTLS T_LOG
start_bg() {
  local name=$1 port=$2; shift 2
  port_busy "$port" && die "port $port already in use"
  taskset -c "$SERVER_CPU" $NICE_CMD "$@" >>"$WORK/logs/$name.out" 2>>"$WORK/logs/$name.err" </dev/null &
  local pid=$!
  STARTED_PIDS+=("$pid")
  wait_port "$port" "$pid"
  T_PID[$name]=$pid
  log "started $name pid=$pid port=$port"
}

# ------------------------------------------------------------------ 1. install + build
install_deps() {
  if [[ $SKIP_INSTALL == 1 ]]; then return; fi
  log "installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d in containers keeps the packaged services from starting; we start our own.
  apt-get install -y -qq --no-install-recommends nginx haproxy caddy wrk curl openssl \
    procps util-linux iproute2 gettext-base python3-minimal >/dev/null
}
build_loadgen() {
  command -v cargo >/dev/null || die "cargo not found (install Rust via rustup)"
  [[ -f $BASE/loadgen/Cargo.toml ]] || die "loadgen source missing at $BASE/loadgen"
  log "building loadgen (release)"
  (cd "$BASE/loadgen" && CARGO_TARGET_DIR="$SCRATCH/loadgen-target" cargo build --release -q)
}

# ------------------------------------------------------------------ 2. PKI
genkey() {
  if [[ $KEY_ALG == rsa ]]; then openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
  else openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; fi
}
make_pki() {
  local d=$WORK/pki
  mkdir -p "$d"; cd "$d"
  log "generating PKI ($KEY_ALG) in $d"
  # server CA
  genkey ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=Bench Server CA" -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  # server cert gw.test / 127.0.0.1
  genkey server.key
  openssl req -new -key server.key -subj "/CN=$SNI" -out server.csr
  printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$SNI" >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 -extfile server.ext -out server.pem 2>/dev/null
  cat server.pem server.key >server-combined.pem          # haproxy wants cert+key in one file
  # device CA + one device (client) cert
  genkey device-ca.key
  openssl req -x509 -new -key device-ca.key -sha256 -days 3650 -subj "/O=Bench/CN=Bench Device CA" -out device-ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  genkey client.key
  openssl req -new -key client.key -subj "/O=Bench/OU=admins/CN=device-001" -out client.csr
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA device-ca.pem -CAkey device-ca.key -CAcreateserial -days 825 -sha256 -extfile client.ext -out client.pem 2>/dev/null
  openssl verify -CAfile ca.pem server.pem >/dev/null && openssl verify -CAfile device-ca.pem client.pem >/dev/null
  openssl rand -hex 32 >log-signing.key
  chmod 644 ./*.pem ./*.key   # nginx workers run as nobody; keys are throwaway test keys
  cd - >/dev/null
}

# ------------------------------------------------------------------ 3. configs
write_configs() {
  local P=$WORK/pki L=$WORK/logs C=$WORK/conf
  mkdir -p "$C" "$WORK/www" "$WORK/tmp" "$WORK/caddy"
  chmod 777 "$WORK/tmp"
  head -c 768 /dev/urandom | base64 -w0 >"$WORK/www/1k"       # exactly 1024 bytes
  head -c 49152 /dev/urandom | base64 -w0 >"$WORK/www/64k"    # exactly 65536 bytes
  chmod -R a+rX "$WORK/www"

  local common_http="
    client_body_temp_path $WORK/tmp/body; proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fcgi; uwsgi_temp_path $WORK/tmp/uwsgi; scgi_temp_path $WORK/tmp/scgi;
    default_type application/octet-stream;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;   # default 1000 would force a reconnect (and TLS handshake) every 1000 requests
    server_tokens off;"

  # --- fixed upstream: static 1 KiB / 64 KiB, keep-alive, no access log
  cat >"$C/upstream.conf" <<EOF
worker_processes 1;
user nobody nogroup;
pid $WORK/run/upstream.pid;
error_log $L/upstream.error.log warn;
events { worker_connections 16384; }
http {
  $common_http
  access_log off;
  open_file_cache max=64 inactive=3600s; open_file_cache_valid 3600s;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    root $WORK/www;
    location / { }
  }
}
EOF

  # --- nginx front ends (mTLS and TLS-only differ only in the two ssl_*client* lines)
  for v in mtls tls; do
    local port=18443 clientauth="ssl_client_certificate $P/device-ca.pem; ssl_verify_client on; ssl_verify_depth 2;"
    [[ $v == tls ]] && port=18444 && clientauth="# no client certificate"
    cat >"$C/nginx-$v.conf" <<EOF
worker_processes 1;
user nobody nogroup;
pid $WORK/run/nginx-$v.pid;
error_log $L/nginx-$v.error.log warn;
events { worker_connections 16384; }
http {
  $common_http
  log_format gw '\$remote_addr [\$time_iso8601] "\$request" \$status \$body_bytes_sent \$request_time '
                'dev="\$ssl_client_s_dn" fp=\$ssl_client_fingerprint verify=\$ssl_client_verify ssl=\$ssl_protocol/\$ssl_cipher';
  access_log $L/nginx-$v-access.log gw;     # unbuffered: one write(2) per request
  upstream admin_app {
    server 127.0.0.1:$UP_PORT;
    keepalive 64; keepalive_requests 1000000; keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$port ssl backlog=4096;
    server_name $SNI;
    ssl_certificate $P/server.pem;
    ssl_certificate_key $P/server.key;
    ssl_protocols TLSv1.3;
    $clientauth
    allow $ALLOW_CIDR;
    deny all;
    location / {
      if (\$cookie_$COOKIE_NAME = "") { return 401; }
      proxy_pass http://admin_app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Device-DN \$ssl_client_s_dn;
      proxy_set_header X-Device-Fingerprint \$ssl_client_fingerprint;
      proxy_buffer_size 16k; proxy_buffers 8 16k;   # 64 KiB fits in memory, no temp file
    }
  }
}
EOF
  done

  # --- haproxy (single process, 1 thread, logs to stdout which we append to a file)
  cat >"$C/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  log stdout format raw local0 info
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  log global
  option dontlognull
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 10s
frontend gw
  bind 127.0.0.1:18445 ssl crt $P/server-combined.pem ca-file $P/device-ca.pem verify required ssl-min-ver TLSv1.3 alpn http/1.1
  tcp-request connection reject unless { src $ALLOW_CIDR }
  http-request deny deny_status 401 unless { req.cook($COOKIE_NAME) -m found }
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Device-DN %[ssl_c_s_dn]
  http-request set-header X-Device-Fingerprint %[ssl_c_sha1,hex]
  log-format "%ci [%tr] %{+Q}r %ST %B %Ta dev=%{+Q}[ssl_c_s_dn] fp=%[ssl_c_sha1,hex] verify=%[ssl_c_verify] ssl=%sslv/%sslc"
  default_backend admin_app
backend admin_app
  http-reuse always        # default 'safe' never reuses for a session's 1st request -> new upstream conn per TLS conn
  server up1 127.0.0.1:$UP_PORT
EOF

  # --- caddy
  cat >"$C/Caddyfile" <<EOF
{
  admin off
  auto_https off
  storage file_system $WORK/caddy/data
}
https://:18446 {
  bind 127.0.0.1
  tls $P/server.pem $P/server.key {
    protocols tls1.3
    client_auth {
      mode require_and_verify
      trusted_ca_cert_file $P/device-ca.pem
    }
  }
  log {
    output file $L/caddy-mtls-access.log {
      roll_disabled
    }
    format json
  }
  @denied not remote_ip $ALLOW_CIDR
  @nocookie not header Cookie *$COOKIE_NAME=*
  route {
    respond @denied 403
    respond @nocookie 401
    reverse_proxy 127.0.0.1:$UP_PORT {
      header_up X-Device-DN {http.request.tls.client.subject}
      header_up X-Device-Fingerprint {http.request.tls.client.fingerprint}
      transport http {
        keepalive 60s
        keepalive_idle_conns 64
        keepalive_idle_conns_per_host 64   # once a keepalive block is given, Go's default of 2 idle conns/host applies -> upstream churn
      }
    }
  }
}
EOF
}

# ------------------------------------------------------------------ 4. start
start_all() {
  mkdir -p "$WORK/run" "$WORK/logs"
  local t
  for t in nginx-tls nginx-mtls haproxy-mtls caddy-mtls gateway; do : >"$WORK/logs/$t-access.log"; done
  chmod 666 "$WORK/logs/"*-access.log

  start_bg upstream $UP_PORT nginx -c "$WORK/conf/upstream.conf" -p "$WORK" -g 'daemon off;'
  T_PID[direct]=${T_PID[upstream]}; T_URL[direct]=http://127.0.0.1:$UP_PORT; T_TLS[direct]=0; T_MTLS[direct]=0; T_LOG[direct]=

  if [[ " $TARGETS " == *" nginx-mtls "* ]]; then
    start_bg nginx-mtls 18443 nginx -c "$WORK/conf/nginx-mtls.conf" -p "$WORK" -g 'daemon off;'
    T_URL[nginx-mtls]=https://127.0.0.1:18443; T_TLS[nginx-mtls]=1; T_MTLS[nginx-mtls]=1
  fi
  if [[ " $TARGETS " == *" nginx-tls "* ]]; then
    start_bg nginx-tls 18444 nginx -c "$WORK/conf/nginx-tls.conf" -p "$WORK" -g 'daemon off;'
    T_URL[nginx-tls]=https://127.0.0.1:18444; T_TLS[nginx-tls]=1; T_MTLS[nginx-tls]=0
  fi
  if [[ " $TARGETS " == *" haproxy-mtls "* ]]; then
    # -db: foreground, single process; stdout (= access log) appended to the log file
    port_busy 18445 && die "port 18445 busy"
    taskset -c "$SERVER_CPU" $NICE_CMD haproxy -db -f "$WORK/conf/haproxy.cfg" >>"$WORK/logs/haproxy-mtls-access.log" 2>>"$WORK/logs/haproxy-mtls.err" </dev/null &
    T_PID[haproxy-mtls]=$!; STARTED_PIDS+=("$!"); wait_port 18445 "$!"; log "started haproxy-mtls pid=$!"
    T_URL[haproxy-mtls]=https://127.0.0.1:18445; T_TLS[haproxy-mtls]=1; T_MTLS[haproxy-mtls]=1
  fi
  if [[ " $TARGETS " == *" caddy-mtls "* ]]; then
    HOME=$WORK/caddy XDG_DATA_HOME=$WORK/caddy XDG_CONFIG_HOME=$WORK/caddy GOMAXPROCS=1 \
      start_bg caddy-mtls 18446 caddy run --config "$WORK/conf/Caddyfile" --adapter caddyfile
    T_URL[caddy-mtls]=https://127.0.0.1:18446; T_TLS[caddy-mtls]=1; T_MTLS[caddy-mtls]=1
  fi
  if [[ -n $GATEWAY_CMD ]]; then
    export GW_PORT=$GATEWAY_PORT GW_LISTEN=127.0.0.1:$GATEWAY_PORT GW_CERT=$WORK/pki/server.pem GW_KEY=$WORK/pki/server.key \
      GW_CERT_KEY_PEM=$WORK/pki/server-combined.pem GW_CLIENT_CA=$WORK/pki/device-ca.pem GW_UPSTREAM=http://127.0.0.1:$UP_PORT GW_UPSTREAM_HOSTPORT=127.0.0.1:$UP_PORT \
      GW_ALLOW_CIDR=$ALLOW_CIDR GW_ACCESS_LOG=$WORK/logs/gateway-access.log GW_LOG_KEY=$(cat "$WORK/pki/log-signing.key") \
      GW_COOKIE_NAME=$COOKIE_NAME GW_CONFIG=$WORK/conf/gateway.conf GW_WORK=$WORK
    if [[ -n $GATEWAY_CONFIG_TEMPLATE ]]; then envsubst <"$GATEWAY_CONFIG_TEMPLATE" >"$GW_CONFIG"; fi
    start_bg "$GATEWAY_NAME" "$GATEWAY_PORT" bash -c "exec $GATEWAY_CMD"
    if [[ -n ${GATEWAY_COOKIE_FILE:-} ]]; then
      local waited=0
      until [[ -s $GATEWAY_COOKIE_FILE ]]; do
        ((waited++ < 300)) || die "no session cookie in $GATEWAY_COOKIE_FILE after 30 s"
        sleep 0.1
      done
      GATEWAY_COOKIE="$GATEWAY_COOKIE; $(cat "$GATEWAY_COOKIE_FILE")"
      log "gateway session cookie read from $GATEWAY_COOKIE_FILE"
    fi
    T_URL[$GATEWAY_NAME]=https://127.0.0.1:$GATEWAY_PORT; T_TLS[$GATEWAY_NAME]=1; T_MTLS[$GATEWAY_NAME]=1
    [[ " $TARGETS " == *" $GATEWAY_NAME "* ]] || TARGETS="$TARGETS $GATEWAY_NAME"
  fi
  for t in $TARGETS; do
    [[ -n ${T_PID[$t]:-} ]] || die "unknown or unstarted target '$t'"
    [[ $t == direct ]] || T_LOG[$t]=$WORK/logs/$t-access.log
    if [[ $t == "$GATEWAY_NAME" ]]; then T_LOG[$t]=$WORK/logs/gateway-access.log; fi
  done
  sleep 1
}

# ------------------------------------------------------------------ 5. functional checks
curl_code() { # target path [extra curl args...] -> http code, or "ERR<rc>"
  local t=$1 path=$2; shift 2
  local url=${T_URL[$t]} args=(-s -o /dev/null -w '%{http_code}' --max-time 5)
  if [[ ${T_TLS[$t]} == 1 ]]; then
    local port=${url##*:}
    url=https://$SNI:$port; args+=(--cacert "$WORK/pki/ca.pem" --resolve "$SNI:$port:127.0.0.1" --tlsv1.3)
  fi
  local out rc=0
  out=$(curl "${args[@]}" "$@" "$url$path") || rc=$?
  if ((rc)); then echo "ERR$rc"; else echo "$out"; fi
}
functional_checks() {
  log "functional checks"
  local t ok=1 cc=(--cert "$WORK/pki/client.pem" --key "$WORK/pki/client.key") ck=(-H "Cookie: $GATEWAY_COOKIE")
  local out=$RESULTS/functional.md
  printf '| target | cert+cookie | no client cert | no cookie | deny probe (%s) | log lines added |\n|---|---|---|---|---|---|\n' "${DENY_PROBE_IP:-not set}" >"$out"
  for t in $TARGETS; do
    if [[ $t == direct ]]; then
      printf '| direct | %s | n/a | n/a | n/a | n/a |\n' "$(curl_code direct /1k)" >>"$out"; continue
    fi
    local a b='n/a' d e='-' before after
    before=$(wc -l <"${T_LOG[$t]}")
    a=$(curl_code "$t" /1k "${cc[@]}" "${ck[@]}")
    if [[ ${T_MTLS[$t]} == 1 ]]; then b=$(curl_code "$t" /1k "${ck[@]}"); fi
    d=$(curl_code "$t" /1k "${cc[@]}")
    if [[ -n $DENY_PROBE_IP ]]; then e=$(curl_code "$t" /1k "${cc[@]}" "${ck[@]}" --interface "$DENY_PROBE_IP"); fi
    sleep 0.3; after=$(wc -l <"${T_LOG[$t]}")
    local dshow=$d
    if [[ $t == "$GATEWAY_NAME" && $GATEWAY_COOKIE_CHECK == 0 ]]; then dshow="$d (not judged: GATEWAY_COOKIE_CHECK=0)"; d=401; fi
    printf '| %s | %s | %s | %s | %s | +%s |\n' "$t" "$a" "$b" "$dshow" "$e" "$((after - before))" >>"$out"
    if [[ $a != 200 || $b == 200 || $d == 200 || $e == 200 ]]; then ok=0; fi
  done
  cat "$out" >&2
  if ((ok == 0)); then die "functional checks failed: a target accepted a request it must reject, or rejected a valid one"; fi
}

# ------------------------------------------------------------------ 6. measurements
run_one() { # round scenario target
  local r=$1 s=$2 t=$3 path=/1k mode=keepalive c=$CONNS extra=()
  case $s in
    ka1k) ;;
    ka64k) path=/64k ;;
    c1) c=1 ;;                                   # one admin, keep-alive: added latency
    hs) mode=handshake; c=$HS_CONNS ;;
    hs1) mode=handshake; c=1 ;;                  # one admin, new connection per request
    hsr) mode=handshake; c=$HS_CONNS; extra+=(--resume) ;;
    *) die "unknown scenario $s" ;;
  esac
  local args=(--url "${T_URL[$t]}$path" -c "$c" -d "$DURATION" -w "$WARMUP" -m "$mode" --label "$t"
              -H "Cookie: $GATEWAY_COOKIE" --watch "peer=${T_PID[$t]}" "${extra[@]}")
  [[ $t == direct ]] || args+=(--watch "up=${T_PID[upstream]}")
  if [[ ${T_TLS[$t]} == 1 ]]; then args+=(--ca "$WORK/pki/ca.pem" --sni "$SNI"); fi
  if [[ ${T_MTLS[$t]} == 1 ]]; then args+=(--cert "$WORK/pki/client.pem" --key "$WORK/pki/client.key"); fi
  if [[ -n ${T_LOG[$t]:-} ]]; then : >"${T_LOG[$t]}"; fi
  local line loglines=- waited
  waited=$(wait_quiet)
  line=$(taskset -c "$CLIENT_CPU" $NICE_CMD "$LOADGEN" "${args[@]}" 2>>"$RESULTS/loadgen.stderr") || die "loadgen failed for $t/$s"
  if [[ -n ${T_LOG[$t]:-} ]]; then sleep 0.2; loglines=$(wc -l <"${T_LOG[$t]}"); fi
  echo "$line round=$r scenario=$s target=$t quiet_wait_s=$waited log_lines=$loglines" | tee -a "$RESULTS/raw.txt" >&2
  if [[ -n ${T_LOG[$t]:-} ]]; then tail -n 2 "${T_LOG[$t]}" >"$RESULTS/logsample-$t.txt" 2>/dev/null || true; : >"${T_LOG[$t]}"; fi
  sleep "$PAUSE"
}

# Shared machine: before each run wait (at most QUIET_TIMEOUT s) until the CPU time used by
# everything is below QUIET_MAX_PCT % of one core (our servers are idle then). Prints seconds waited.
wait_quiet() {
  local t0=$SECONDS a b busy
  while :; do
    a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
    busy=$(awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN{split(a,x," ");split(b,y," ");u=0;for(i=2;i<=4;i++)u+=y[i]-x[i];printf "%d",100*u/hz}')
    if ((busy <= QUIET_MAX_PCT || SECONDS - t0 >= QUIET_TIMEOUT)); then break; fi
  done
  echo $((SECONDS - t0))
}

wrk_check() { # cross-check loadgen against wrk on the targets wrk can drive (no client cert)
  [[ $WRK_CHECK == 1 ]] || return 0
  command -v wrk >/dev/null || return 0
  log "wrk cross-check (targets without client certs only: wrk cannot present one); loadgen and wrk back to back"
  local t u out lg i
  for i in 1 2; do
    for t in direct nginx-tls; do
      if [[ " $TARGETS " != *" $t "* ]]; then continue; fi
      u=${T_URL[$t]}/1k
      wait_quiet >/dev/null
      lg=$(taskset -c "$CLIENT_CPU" $NICE_CMD "$LOADGEN" --url "$u" -c "$CONNS" -d "$DURATION" -w "$WARMUP" -H "Cookie: $GATEWAY_COOKIE" \
            --ca "$WORK/pki/ca.pem" --sni "$SNI" --label "$t" 2>/dev/null | tr ' ' '\n' | awk -F= '$1=="rps"{print $2}')
      wait_quiet >/dev/null
      taskset -c "$CLIENT_CPU" $NICE_CMD wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Cookie: $GATEWAY_COOKIE" -H "Host: $SNI" "$u" >/dev/null 2>&1 || true
      out=$(taskset -c "$CLIENT_CPU" $NICE_CMD wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Cookie: $GATEWAY_COOKIE" -H "Host: $SNI" "$u" 2>&1) || true
      echo "WRK target=$t rps=$(awk '/Requests\/sec/{print $2}' <<<"$out") p50=$(awk '$1=="50%"{print $2}' <<<"$out") p99=$(awk '$1=="99%"{print $2}' <<<"$out") non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out") lg_rps=$lg" | tee -a "$RESULTS/raw.txt" >&2
      if [[ -n ${T_LOG[$t]:-} ]]; then : >"${T_LOG[$t]}"; fi
      sleep "$PAUSE"
    done
  done
}

# ------------------------------------------------------------------ 7. report
summarize() {
  "$PY" - "$RESULTS" "$REF_TARGET" <<'PYEOF'
import sys, statistics as st, collections, os
res = sys.argv[1]
REF = sys.argv[2] if len(sys.argv) > 2 else "nginx-mtls"
rows, wrk, mem = [], [], {}
for line in open(os.path.join(res, "raw.txt")):
    parts = line.split()
    if not parts: continue
    kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if parts[0] == "RESULT": rows.append(kv)
    elif parts[0] == "WRK": wrk.append(kv)
    elif parts[0] == "MEM": mem[kv["target"]] = kv
def f(x):
    try: return float(x)
    except: return float("nan")
targets = []
for r in rows:
    if r["target"] not in targets: targets.append(r["target"])
by = collections.defaultdict(list)
for r in rows: by[(r["scenario"], r["target"])].append(r)
def med(rs, k): 
    v = [f(r.get(k)) for r in rs if k in r]
    return st.median(v) if v else float("nan")
def rng(rs, k):
    v = [f(r.get(k)) for r in rs if k in r]
    return (min(v), max(v)) if v else (float("nan"),)*2
names = {"ka1k": "Keep-alive, 1 KiB, c=%s", "ka64k": "Keep-alive, 64 KiB, c=%s",
         "hs": "New connection per request (full TLS handshake, no resumption), 1 KiB, c=%s",
         "c1": "Single admin: keep-alive, 1 KiB, c=%s (latency)",
         "hs1": "Single admin: new connection per request (full handshake), 1 KiB, c=%s (latency)",
         "hsr": "New connection per request, TLS resumption allowed, 1 KiB, c=%s"}
out = []
def fmt(x, p=0):
    return "–" if x != x else (f"{x:,.{p}f}")
for sc in ["ka1k", "ka64k", "hs", "c1", "hs1", "hsr"]:
    if not any(k[0] == sc for k in by): continue
    conns = next(r["conns"] for r in rows if r["scenario"] == sc)
    unit = "conn/s" if sc.startswith("hs") else "req/s"
    out.append(f"\n### {names[sc] % conns}\n")
    out.append(f"| target | {unit} median (min–max) | × direct | × {REF} | p50 µs | p99 µs | Δp50 vs direct µs | peer CPU µs/req | CPU/req × {REF} | peer CPU % of a core | upstream CPU µs/req | loadgen CPU % | other tenants CPU % | err / bad | log lines per response |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = {r["round"]: r for r in by.get((sc, "direct"), [])}
    ref = {r["round"]: r for r in by.get((sc, REF), [])}
    for t in targets:
        rs = by.get((sc, t), [])
        if not rs: continue
        ratios = [f(r["rps"]) / f(base[r["round"]]["rps"]) for r in rs if r["round"] in base and f(base[r["round"]]["rps"]) > 0]
        dp50 = [f(r["p50_us"]) - f(base[r["round"]]["p50_us"]) for r in rs if r["round"] in base]
        rratio = [f(r["rps"]) / f(ref[r["round"]]["rps"]) for r in rs if r["round"] in ref and f(ref[r["round"]]["rps"]) > 0]
        cratio = [f(r["peer_cpu_us_per_req"]) / f(ref[r["round"]]["peer_cpu_us_per_req"]) for r in rs if r["round"] in ref and f(ref[r["round"]]["peer_cpu_us_per_req"]) > 0]
        lo, hi = rng(rs, "rps")
        errs = sum(int(r["err"]) for r in rs); bad = sum(int(r["bad"]) for r in rs)
        ll = [f(r["log_lines"]) / max(1.0, f(r.get("all_ok", r["ok"]))) for r in rs if r.get("log_lines", "-") != "-"]
        out.append(f"| {t} | {fmt(med(rs,'rps'))} ({fmt(lo)}–{fmt(hi)}) | {fmt(st.median(ratios),2) if ratios else '–'} | {fmt(st.median(rratio),2) if rratio else '–'} | "
                   f"{fmt(med(rs,'p50_us'))} | {fmt(med(rs,'p99_us'))} | {fmt(st.median(dp50)) if dp50 else '–'} | "
                   f"{fmt(med(rs,'peer_cpu_us_per_req'),1)} | {fmt(st.median(cratio),2) if cratio else '–'} | {fmt(med(rs,'peer_cpu_pct'))} | {fmt(med(rs,'up_cpu_us_per_req'),1)} | "
                   f"{fmt(med(rs,'lg_cpu_pct'))} | {fmt(med(rs,'other_cpu_pct'))} | {errs} / {bad} | {fmt(st.median(ll),3) if ll else 'n/a'} |")
out.append("\n### Memory (sum over the peer's processes; RSS double-counts shared pages across nginx master+worker, PSS does not)\n")
out.append("| target | processes | idle RSS MiB (after start) | idle PSS MiB | RSS MiB under load, max over ka1k runs | max over all runs | RSS MiB after all runs |")
out.append("|---|---|---|---|---|---|---|")
for t in targets:
    m = mem.get(t, {})
    rs = [r for r in rows if r["target"] == t]
    ka = [f(r["peer_rss_max_kb"]) for r in rs if r["scenario"] == "ka1k"]
    al = [f(r["peer_rss_max_kb"]) for r in rs]
    mb = lambda x: f"{f(x)/1024:.1f}"
    out.append(f"| {t} | {rs[0].get('peer_nproc','?') if rs else '?'} | {mb(m.get('idle_rss_kb','nan'))} | {mb(m.get('idle_pss_kb','nan'))} | {mb(max(ka)) if ka else '–'} | {mb(max(al)) if al else '–'} | {mb(m.get('final_rss_kb','nan'))} |")
if wrk:
    out.append("\n### Cross-check: wrk (C, OpenSSL) vs loadgen on targets without client certs, ka1k\n")
    out.append("| target | loadgen req/s (run just before) | wrk req/s | wrk/loadgen | wrk p50 | wrk p99 |")
    out.append("|---|---|---|---|---|---|")
    for w in wrk:
        out.append(f"| {w['target']} | {fmt(f(w.get('lg_rps')))} | {fmt(f(w['rps']))} | {fmt(f(w['rps'])/f(w.get('lg_rps')),2)} | {w.get('p50','')} | {w.get('p99','')} |")
suites = sorted({r.get("suite") for r in rows if r.get("suite") not in (None, "none")})
out.append(f"\nNegotiated TLS suite(s) seen by the client: {', '.join(suites) or 'n/a'}. Rounds: {max(int(r['round']) for r in rows)}.")
print("\n".join(out))
PYEOF
}

# ------------------------------------------------------------------ main
main() {
  if [[ ${1:-} == summarize ]]; then   # re-print the tables of an earlier run: ./run-baseline.sh summarize results/<dir>
    RESULTS=$(cd "${2:?results dir}" && pwd); summarize; return
  fi
  mkdir -p "$RESULTS"
  install_deps
  build_loadgen
  # fresh work dir every run (PKI, configs, logs)
  rm -rf "$WORK"; mkdir -p "$WORK/logs" "$WORK/run"
  make_pki
  write_configs
  {
    echo "date: $(date -Is)"; echo "kernel: $(uname -r)"; echo "cpus: $(nproc) ($(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}'))"
    echo "nginx: $(nginx -v 2>&1)"; echo "haproxy: $(haproxy -v | head -1)"; echo "caddy: $(caddy version)"
    echo "openssl: $(openssl version)"; echo "wrk: $(wrk -v 2>&1 | head -1)"; echo "rustc: $(rustc --version)"
    echo "settings: ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS HS_CONNS=$HS_CONNS SCENARIOS='$SCENARIOS' KEY_ALG=$KEY_ALG SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU ALLOW_CIDR=$ALLOW_CIDR NICE=$NICE QUIET_MAX_PCT=$QUIET_MAX_PCT QUIET_TIMEOUT=$QUIET_TIMEOUT"
  } >"$RESULTS/env.txt"
  start_all
  echo "targets: $TARGETS" >>"$RESULTS/env.txt"
  cp -r "$WORK/conf" "$RESULTS/conf"
  local t
  for t in $TARGETS; do  # idle memory, before any traffic
    echo "MEM target=$t idle_rss_kb=$(tree_rss "${T_PID[$t]}") idle_pss_kb=$(tree_pss "${T_PID[$t]}")" >>"$RESULTS/mem-idle.txt"
  done
  functional_checks
  local r s
  for r in $(seq "$ROUNDS"); do
    for s in $SCENARIOS; do
      for t in $TARGETS; do
        log "round $r/$ROUNDS scenario $s target $t"
        run_one "$r" "$s" "$t"
      done
    done
  done
  wrk_check
  sleep 3
  for t in $TARGETS; do
    echo "$(grep " target=$t " "$RESULTS/mem-idle.txt") final_rss_kb=$(tree_rss "${T_PID[$t]}")" >>"$RESULTS/raw.txt"
  done
  summarize | tee "$RESULTS/summary.md"
  log "results in $RESULTS"
}
main "$@"
