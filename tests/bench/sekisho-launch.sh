#!/usr/bin/env bash
# sekisho-launch.sh — the GATEWAY_CMD that tests/bench/run.sh gives run-baseline.sh.
#
# run-baseline.sh makes a fresh PKI on every run and renders the policy before it starts the
# gateway, so the device CRL can only be made here, just before Sekisho starts:
#   1. copy the bench's device CA (certificate + key) into $SEKISHO_BENCH_DIR/ca and let
#      `sekisho ca refresh-crl` sign an empty CRL for it (device-ca.crl.pem);
#   2. give the harness's access-log path (GW_ACCESS_LOG, whose lines it counts and
#      truncates between runs) a file of its own: Sekisho's signed log must not be truncated;
#   3. exec Sekisho (same PID, so the harness pins, measures and stops Sekisho itself).
#   4. with SEKISHO_BENCH_ACCESS=protected, enrol a user beside it and hand its session
#      cookie to the harness (see below).
# Needs: SEKISHO_BIN (exported by run.sh) and the GW_* variables of run-baseline.sh; curl and
# oathtool for the protected route.
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
# The harness counts and truncates its access-log file between runs. Sekisho's log is
# hash-chained and sealed (a truncation is tampering), so the harness gets a file of its own
# that stays empty; run.sh verifies Sekisho's log with `sekisho log verify` after the runs.
: >>"$D/harness-access.log"
ln -sfn "$D/harness-access.log" "$GW_ACCESS_LOG"
if [[ ${SEKISHO_BENCH_ACCESS:-public} == protected ]]; then
  # 4. protected route: once Sekisho serves, enrol the user "bench" as a person would, with
  #    the harness's client certificate (the session is bound to that device): invitation
  #    from the host console, claim, TOTP proven with an oathtool code; the session cookie
  #    goes to GATEWAY_COOKIE_FILE, which run-baseline.sh waits for. Runs beside Sekisho.
  : "${GATEWAY_COOKIE_FILE:?run.sh sets GATEWAY_COOKIE_FILE with BENCH_ROUTE=protected}"
  rm -f "$GATEWAY_COOKIE_FILE"
  (
    set -Eeuo pipefail
    exec >>"$D/enrol.log" 2>&1
    curl_gw() {
      curl -sS --max-time 5 --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
        --resolve "gw.test:$GW_PORT:127.0.0.1" "$@"
    }
    field() { grep -o "name=\"$1\"[^>]*value=\"[^\"]*\"" | head -1 | sed 's/.*value="//; s/"$//; s/&amp;/\&/g'; }
    for _ in $(seq 100); do
      curl_gw -o /dev/null "https://gw.test:$GW_PORT/.sekisho/login" && break
      sleep 0.1
    done
    link=$("$SEKISHO_BIN" user --policy "$GW_CONFIG" invite bench | grep -o 'https://[^ ]*/.sekisho/invite?t=[^ ]*' | head -1)
    link=${link/:\/\/gw.test:*\/.sekisho/://gw.test:$GW_PORT/.sekisho}
    page=$(curl_gw "$link")
    claim=$(curl_gw --data-urlencode "csrf=$(field csrf <<<"$page")" --data-urlencode "t=$(field t <<<"$page")" \
      "https://gw.test:$GW_PORT/.sekisho/invite")
    secret=$(grep -o 'otpauth://[^<"]*' <<<"$claim" | head -1 | sed 's/.*secret=//; s/&.*//')
    code=$(oathtool --totp -b "$secret")
    cookie=$(curl_gw -o /dev/null -D - --data-urlencode "csrf=$(field csrf <<<"$claim")" \
      --data-urlencode "enrol=$(field enrol <<<"$claim")" --data-urlencode "code=$code" \
      "https://gw.test:$GW_PORT/.sekisho/enrol/totp" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(__Host-sekisho=[^;]*\).*/\1/p')
    [[ -n $cookie ]] || { echo "enrolment gave no session cookie"; exit 1; }
    printf '%s' "$cookie" >"$GATEWAY_COOKIE_FILE.tmp"
    mv "$GATEWAY_COOKIE_FILE.tmp" "$GATEWAY_COOKIE_FILE"
    echo "enrolled bench; session cookie in $GATEWAY_COOKIE_FILE"
  ) &
fi
exec "$SEKISHO_BIN" run --policy "$GW_CONFIG"
