#!/usr/bin/env bash
# sekisho-launch.sh — the GATEWAY_CMD that tests/bench/run.sh gives run-baseline.sh.
#
# run-baseline.sh makes a fresh PKI on every run and renders the policy before it starts the
# gateway, so the device CRL can only be made here, just before Sekisho starts:
#   1. copy the bench's device CA (certificate + key) into $SEKISHO_BENCH_DIR/ca and let
#      `sekisho ca refresh-crl` sign an empty CRL for it (device-ca.crl.pem);
#   2. point the harness's access-log path (GW_ACCESS_LOG, whose lines it counts and
#      truncates between runs) at Sekisho's log_dir/access.jsonl;
#   3. exec Sekisho (same PID, so the harness pins, measures and stops Sekisho itself).
# Needs: SEKISHO_BIN (exported by run.sh) and the GW_* variables of run-baseline.sh.
set -Eeuo pipefail
: "${SEKISHO_BIN:?SEKISHO_BIN not set}" "${GW_WORK:?run by run-baseline.sh only}" "${GW_CONFIG:?}"
D=${SEKISHO_BENCH_DIR:-$GW_WORK/sekisho}
mkdir -p "$D/ca" "$D/state" "$D/log"
pki=$(dirname "$GW_CLIENT_CA")
cp "$GW_CLIENT_CA" "$D/ca/device-ca.pem"
cp "$pki/device-ca.key" "$D/ca/device-ca.key"
chmod 600 "$D/ca/device-ca.key"
"$SEKISHO_BIN" ca refresh-crl --ca "$D/ca" >&2
[[ -s $D/ca/device-ca.crl.pem ]] || { echo "sekisho-launch: no CRL was written" >&2; exit 1; }
: >>"$D/log/access.jsonl"
ln -sfn "$D/log/access.jsonl" "$GW_ACCESS_LOG"
exec "$SEKISHO_BIN" run --policy "$GW_CONFIG"
