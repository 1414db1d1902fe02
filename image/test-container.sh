#!/usr/bin/env bash
# Runs the container image the way a host without Docker would: `umoci unpack` into an OCI
# runtime bundle, `runc run` with a read-only root, the config, state and log volumes bound
# in, no capabilities, in a network namespace of its own. Inside that namespace an upstream
# (python3 http.server) and a real TLS client (curl, with and without a device certificate)
# check allow and deny; then SIGTERM must stop it cleanly with a verifiable, sealed log.
# Also builds the image twice and requires the same digest.
#
#   image/test-container.sh            (called by .ci/run)
#
# Needs root, runc, umoci, ip (iproute2), curl, openssl, python3, and what
# image/build-container.sh needs. A missing tool is a failure.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in runc umoci ip curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "test-container: $tool is missing" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "test-container: needs root (runc, network namespaces)" >&2; exit 1; }

say() { printf 'test-container: %s\n' "$*"; }
fail() { printf 'test-container: FAIL: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/sekisho-ct.XXXXXX)
ID=sekisho-ct-$$
NS=sekisho-ct-$$
UPSTREAM_PID=
RUNC_PID=
cleanup() {
  set +e
  runc kill "$ID" KILL >/dev/null 2>&1
  [[ -n $RUNC_PID ]] && wait "$RUNC_PID" 2>/dev/null
  runc delete --force "$ID" >/dev/null 2>&1
  [[ -n $UPSTREAM_PID ]] && kill "$UPSTREAM_PID" 2>/dev/null && wait "$UPSTREAM_PID" 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Build twice: the same digest and the same bytes.
image/build-container.sh "$WORK/a" | tail -3
image/build-container.sh "$WORK/b" >/dev/null
A=$(cat "$WORK/a/digest")
B=$(cat "$WORK/b/digest")
[[ $A == "$B" ]] || fail "two builds gave different digests: $A $B"
cmp -s "$WORK/a/sekisho-image.tar" "$WORK/b/sekisho-image.tar" || fail "two builds gave different image tars"
say "reproducible: both builds are $A"
python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b["bomFormat"]=="CycloneDX" and len(b["components"])>50, "SBOM"; print("test-container: SBOM lists", len(b["components"]), "crates")' "$WORK/a/sekisho.cdx.json"
SEKISHO=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/sekisho

# 2. The host side: certificates, the policy, the volumes.
UID_GID=65532
CONF=$WORK/etc-sekisho STATE=$WORK/state LOG=$WORK/log
mkdir -p "$STATE" "$LOG"
. image/test-config.sh
make_test_config "$SEKISHO" "$CONF" "$WORK" http://127.0.0.1:9080 /var/lib/sekisho /var/log/sekisho
make_test_www "$WORK/www"
# Config: root's, readable by the gateway's group only; state and log: the gateway's.
chown -R "0:$UID_GID" "$CONF"
find "$CONF" -type d -exec chmod 0750 {} +
find "$CONF" -type f -exec chmod 0640 {} +
chown "$UID_GID:$UID_GID" "$STATE" "$LOG"
chmod 0700 "$STATE" "$LOG"

# 3. The bundle: umoci's config from the image, then read-only root, volumes, no
#    capabilities, rlimits, and the network namespace made here.
ip netns add "$NS"
ip -n "$NS" link set lo up
umoci unpack --image "$WORK/a/oci:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$WORK/a/oci/index.json")" "$WORK/bundle" >/dev/null
# runc sets rlimits after the container's capabilities are gone: no higher than ours.
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=65536
python3 - "$WORK/bundle/config.json" "$NS" "$CONF" "$STATE" "$LOG" "$NOFILE" <<'PY'
import json, sys
path, ns, conf, state, log, nofile = sys.argv[1:]
c = json.load(open(path))
c["root"]["readonly"] = True
c["process"]["terminal"] = False
c["process"]["env"] = [e for e in c["process"].get("env", []) if not e.startswith("SEKISHO_LOG=")] + [
    "SEKISHO_LOG=" + (__import__("os").environ.get("SEKISHO_TEST_LOG") or "info")
]
c["process"]["noNewPrivileges"] = True
c["process"]["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": int(nofile), "soft": int(nofile)}]
assert c["process"]["user"]["uid"] == 65532, c["process"]["user"]
c["mounts"] += [
    {"destination": "/etc/sekisho", "type": "bind", "source": conf, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
    {"destination": "/var/lib/sekisho", "type": "bind", "source": state, "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]},
    {"destination": "/var/log/sekisho", "type": "bind", "source": log, "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]},
]
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"] + [
    {"type": "network", "path": f"/var/run/netns/{ns}"}
]
json.dump(c, open(path, "w"), indent=1)
PY

# 4. Upstream and gateway, both inside the namespace.
ip netns exec "$NS" python3 -m http.server 9080 --bind 127.0.0.1 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
T0=$(date +%s.%N)
runc run --bundle "$WORK/bundle" "$ID" >"$WORK/gateway.log" 2>&1 &
RUNC_PID=$!
for _ in $(seq 1 200); do
  grep -q 'sekisho: ready' "$WORK/gateway.log" && break
  kill -0 "$RUNC_PID" 2>/dev/null || { cat "$WORK/gateway.log" >&2; fail "the container exited before it was ready"; }
  sleep 0.1
done
grep -q 'sekisho: ready' "$WORK/gateway.log" || { cat "$WORK/gateway.log" >&2; fail "not ready within 20 s"; }
say "ready after $(python3 -c "import sys; print(round($(date +%s.%N) - $T0, 2))") s"

# The running gateway: PID 1 of its container, the image's user, nothing privileged.
PID=$(runc state "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
STATUS=$(cat "/proc/$PID/status")
grep -q $'^NSpid:\t[0-9]*\t1$' <<<"$STATUS" || fail "not PID 1 in its namespace: $(grep NSpid <<<"$STATUS")"
grep -q $'^Uid:\t65532\t65532\t65532\t65532$' <<<"$STATUS" || fail "uid: $(grep Uid <<<"$STATUS")"
grep -q $'^NoNewPrivs:\t1$' <<<"$STATUS" || fail "NoNewPrivs"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
  grep -q "^$cap:"$'\t'"0000000000000000$" <<<"$STATUS" || fail "$cap: $(grep "^$cap" <<<"$STATUS")"
done
grep -qaE 'landlock.{0,24}Full' "$WORK/gateway.log" || fail "Landlock is not fully enforced: $(grep -i landlock "$WORK/gateway.log")"

# 5. Allow and deny through it, with a real TLS client.
C=(ip netns exec "$NS" curl --silent --show-error --max-time 10 --cacert "$CONF/tls/cert.pem"
   --resolve gw.test:8443:127.0.0.1 --output "$WORK/body" --write-out '%{http_code}')
DEV=(--cert "$WORK/laptop.p12.crt.pem" --key "$WORK/laptop.p12.key.pem")
expect() { # STATUS URL [curl args…]
  local want=$1 url=$2; shift 2
  local got; got=$("${C[@]}" "$@" "$url") || true
  [[ $got == "$want" ]] || { cat "$WORK/gateway.log" >&2; fail "$url ${*:-}: HTTP $got, expected $want"; }
  local how=""
  [[ " $* " == *" --cert "* ]] && how="(device) "
  [[ " $* " == *" -H "* ]] && how="(other Host) "
  say "$url $how→ $got"
}
expect 200 https://gw.test:8443/
grep -q 'shop page' "$WORK/body" || fail "the upstream's page did not come through"
expect 403 https://gw.test:8443/staff/
expect 200 https://gw.test:8443/staff/ "${DEV[@]}"
grep -q 'staff page' "$WORK/body" || fail "the device route's page did not come through"
expect 403 https://gw.test:8443/.git/config "${DEV[@]}"
expect 421 https://gw.test:8443/ -H 'Host: other.test'

# 6. PID 1 reaps: an orphan in the container's PID namespace is re-parented to the gateway
#    and, once it has exited, reaped (a zombie would stay in /proc with State Z).
children_named() { # PARENT NAME → pids
  python3 - "$1" "$2" <<'PY'
import glob, sys
for path in glob.glob("/proc/[0-9]*/status"):
    try:
        fields = dict(l.split(":", 1) for l in open(path).read().splitlines() if ":" in l)
    except OSError:
        continue
    if fields.get("PPid", "").strip() == sys.argv[1] and fields.get("Name", "").strip() == sys.argv[2]:
        print(path.split("/")[2])
PY
}
nsenter --target "$PID" --pid -- /bin/sh -c 'sleep 1 & exit 0'
ORPHAN=
for _ in $(seq 1 50); do
  ORPHAN=$(children_named "$PID" sleep | head -1)
  [[ -n $ORPHAN ]] && break
  sleep 0.05
done
[[ -n $ORPHAN ]] || fail "no orphan was re-parented to the gateway (PID $PID)"
REAPED=
for _ in $(seq 1 100); do
  # Gone from /proc, or the number taken by another process: reaped.
  [[ $(awk '/^PPid:/ {print $2}' "/proc/$ORPHAN/status" 2>/dev/null) == "$PID" ]] || { REAPED=1; break; }
  sleep 0.1
done
[[ -n $REAPED ]] || {
  cat "$WORK/gateway.log" >&2
  fail "the orphan $ORPHAN stays a zombie: $(grep State "/proc/$ORPHAN/status"); gateway: $(grep -E '^Sig(Blk|Ign|Cgt)' "/proc/$PID/status" | tr '\n' ' ')"
}
say "PID 1: an orphan was re-parented to the gateway and reaped ($(grep -E '^SigBlk' "/proc/$PID/status" | tr -d '\t'))"

# 7. SIGTERM: a graceful stop, the stop record written, the log verifiable.
runc kill "$ID" TERM
STOPPED=
for _ in $(seq 1 200); do
  kill -0 "$RUNC_PID" 2>/dev/null || { STOPPED=1; break; }
  sleep 0.1
done
[[ -n $STOPPED ]] || fail "no exit within 20 s of SIGTERM"
CODE=0; wait "$RUNC_PID" || CODE=$?
RUNC_PID=
[[ $CODE == 0 ]] || { cat "$WORK/gateway.log" >&2; fail "exit status $CODE after SIGTERM"; }
cat "$LOG"/*.jsonl | grep -q '"kind":"stop"' || fail "no stop record in the log"
"$SEKISHO" log verify "$LOG" >/dev/null || fail "sekisho log verify fails on the container's log"
say "SIGTERM: clean exit, stop record written, log verifies"
say "ok"
