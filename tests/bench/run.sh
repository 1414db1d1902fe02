#!/usr/bin/env bash
# run.sh — benchmark Sekisho against nginx (and optionally haproxy/caddy) on this machine.
#
#   tests/bench/run.sh                                   # the default run (~15 min)
#   ROUNDS=1 DURATION=3 WARMUP=1 SCENARIOS=ka1k RESULTS_MD=/tmp/smoke.md tests/bench/run.sh
#
# 1. builds Sekisho in release: `cargo build --release --locked -p sekisho`
#    (CARGO_TARGET_DIR=/work/target-bench unless set; SKIP_BUILD=1 uses the binary as is);
# 2. runs the harness copied here (run-baseline.sh + loadgen/, from /work/shared/bench) with
#    GATEWAY_CMD=sekisho-launch.sh, which signs a CRL for the bench's device CA with
#    `sekisho ca refresh-crl` and starts `sekisho run --policy` on sekisho.toml.tmpl;
# 3. writes RESULTS.md beside this script (RESULTS_MD=path to write elsewhere): machine,
#    commit, the command, the goals from the issue with paired ratios to nginx-mtls, and
#    the harness's full tables.
#
# Knobs (env), besides every knob of run-baseline.sh (SERVER_CPU, CLIENT_CPU, NICE, ...):
#   ROUNDS=3 DURATION=8 WARMUP=3 SCENARIOS="ka1k hs c1"
#   TARGETS="direct nginx-mtls"   EXTRA_TARGETS=""  (e.g. "haproxy-mtls caddy-mtls nginx-tls")
#   SCRATCH=/tmp/sekisho-bench    CARGO_TARGET_DIR=/work/target-bench   SKIP_BUILD=0
#   SKIP_INSTALL=0 (1: nginx/haproxy/caddy/wrk already installed)   WRK_CHECK=0
#   BENCH_ROUTE=public  (protected: the measured route needs a live second-factor session;
#                        results go to RESULTS-protected.md unless RESULTS_MD is set)
#   BUILD_FROM=tree  (tree: the working tree, uncommitted edits included;
#                     head, or any commit: `git archive` of it exported to $SCRATCH/src —
#                     exactly that commit, e.g. while uncommitted edits do not compile)
set -Eeuo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
export SCRATCH=${SCRATCH:-/tmp/sekisho-bench}
export WORK=${WORK:-$SCRATCH/work}
export RESULTS=${RESULTS:-$SCRATCH/results/$(date +%Y%m%d-%H%M%S)}
export ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8} WARMUP=${WARMUP:-3}
export SCENARIOS=${SCENARIOS:-"ka1k hs c1"}
TARGETS=${TARGETS:-"direct nginx-mtls"}
EXTRA_TARGETS=${EXTRA_TARGETS:-}
export TARGETS="$TARGETS${EXTRA_TARGETS:+ $EXTRA_TARGETS}"
export WRK_CHECK=${WRK_CHECK:-0}
export REF_TARGET=${REF_TARGET:-nginx-mtls}
BENCH_ROUTE=${BENCH_ROUTE:-public}
case $BENCH_ROUTE in
  public) RESULTS_MD=${RESULTS_MD:-$BENCH/RESULTS.md}
          export SEKISHO_BENCH_ACCESS=public SEKISHO_BENCH_ROUTE_EXTRA= GATEWAY_COOKIE_CHECK=0 ;;
  protected) RESULTS_MD=${RESULTS_MD:-$BENCH/RESULTS-protected.md}
          export SEKISHO_BENCH_ACCESS=protected GATEWAY_COOKIE_CHECK=1
          export SEKISHO_BENCH_ROUTE_EXTRA=$'second_factor = ["totp"]\ngroups = ["bench-admins"]'
          export GATEWAY_COOKIE_FILE=$WORK/sekisho/session-cookie ;;
  *) echo "BENCH_ROUTE must be public or protected" >&2; exit 2 ;;
esac
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD_FROM=${BUILD_FROM:-tree}
LOCKED=${LOCKED:-1}   # 0: build without --locked (a commit whose Cargo.lock lags its manifests)

log() { printf '[%(%H:%M:%S)T] run.sh: %s\n' -1 "$*" >&2; }

# The command that reproduces this run (the knobs that differ from run.sh's defaults).
repro="tests/bench/run.sh"
for v in BENCH_ROUTE ROUNDS DURATION WARMUP SCENARIOS EXTRA_TARGETS BUILD_FROM LOCKED KEY_ALG NICE SERVER_CPU CLIENT_CPU CONNS HS_CONNS; do
  [[ -n ${!v:-} ]] && repro="$v=\"${!v}\" $repro"
done
repro="${repro//\"/\'}"   # ROUNDS='3' ... reads fine in Markdown and in a shell

# ------------------------------------------------------------------ 1. build
commit_before=$(git -C "$REPO" rev-parse --short HEAD)
SRC=$REPO
if [[ $BUILD_FROM != tree ]]; then
  rev=$BUILD_FROM; [[ $rev == head ]] && rev=HEAD
  commit_before=$(git -C "$REPO" rev-parse --short "$rev^{commit}") || { log "BUILD_FROM: no commit '$BUILD_FROM'"; exit 2; }
  SRC=$SCRATCH/src
  rm -rf "$SRC"; mkdir -p "$SRC"
  # -m: extraction time as mtime, so cargo never takes the archive for older than a previous build
  git -C "$REPO" archive "$commit_before" | tar -x -m -C "$SRC"
fi
if [[ $SKIP_BUILD != 1 ]]; then
  log "building sekisho (release) from $SRC into $CARGO_TARGET_DIR"
  locked=--locked; [[ $LOCKED == 0 ]] && locked=
  (cd "$SRC" && cargo build --release $locked -p sekisho)
fi
export SEKISHO_BIN=$CARGO_TARGET_DIR/release/sekisho
[[ -x $SEKISHO_BIN ]] || { log "no binary at $SEKISHO_BIN"; exit 1; }

# What is measured: HEAD, plus whatever is uncommitted in the working tree.
commit=$(git -C "$REPO" rev-parse --short HEAD)
dirty=$(git -C "$REPO" status --porcelain -- policy gateway Cargo.toml Cargo.lock | wc -l)
if [[ $BUILD_FROM != tree ]]; then
  commit=$commit_before
  measured="\`$commit\` exactly (BUILD_FROM=$BUILD_FROM: built from \`git archive $commit\`; the working tree's uncommitted edits not included)"
elif ((dirty)); then
  diffsum=$( (git -C "$REPO" diff HEAD -- policy gateway Cargo.toml Cargo.lock;
              git -C "$REPO" ls-files --others --exclude-standard -z -- policy gateway | xargs -0 -r cat) | sha256sum | cut -c1-12)
  measured="\`$commit\` **plus uncommitted changes** in $dirty path(s) under policy/, gateway/ or the manifests (content hash $diffsum) — the binary was built from the working tree"
else
  measured="\`$commit\` (working tree clean under policy/, gateway/ and the manifests)"
fi
if [[ $commit != "$commit_before" ]]; then
  measured="$measured — **HEAD moved from \`$commit_before\` during the build**: rerun to be sure which one was built"
fi
if [[ $SKIP_BUILD == 1 ]]; then
  measured="$measured — SKIP_BUILD=1: the binary ($(date -r "$SEKISHO_BIN" -Is)) may predate this tree"
fi

# ------------------------------------------------------------------ 2. the harness
export GATEWAY_NAME=sekisho
export GATEWAY_CMD="$BENCH/sekisho-launch.sh"
export GATEWAY_CONFIG_TEMPLATE=$BENCH/sekisho.toml.tmpl
export SEKISHO_BENCH_DIR=$WORK/sekisho # log_dir, state_dir and the CRL (inside WORK: fresh every run)
mkdir -p "$RESULTS"
log "harness: TARGETS='$TARGETS' (+sekisho) SCENARIOS='$SCENARIOS' ROUNDS=$ROUNDS DURATION=$DURATION; results in $RESULTS"
rc=0
"$BENCH/run-baseline.sh" 2> >(tee "$RESULTS/harness.log" >&2) || rc=$?
sleep 0.5
cp "$WORK/logs/sekisho.err" "$RESULTS/sekisho.stderr" 2>/dev/null || true
if ((rc)) || [[ ! -s $RESULTS/summary.md ]]; then
  log "the harness failed (exit $rc): see $RESULTS/harness.log, $RESULTS/sekisho.stderr, $RESULTS/loadgen.stderr"
  tail -n 30 "$RESULTS/sekisho.stderr" >&2 2>/dev/null || true
  exit 1
fi

# Sekisho's own log: every record of every run, hash-chained and sealed, verified whole.
verify_rc=0
verify_out=$("$SEKISHO_BIN" log verify "$SEKISHO_BENCH_DIR/log" 2>&1) || verify_rc=$?

# ------------------------------------------------------------------ 3. RESULTS.md
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
{
  echo "# Sekisho benchmark results"
  echo
  echo "- Date: $(date -Is)"
  echo "- Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- Measured: $measured"
  echo "- Toolchain: $(rustc --version); $(nginx -v 2>&1)"
  echo "- Reproduce (from the repository root): \`$repro\`"
  echo "- Harness: \`tests/bench/run-baseline.sh\` (copy of the shared peer baseline; servers pinned to CPU ${SERVER_CPU:-0}, loadgen to CPU ${CLIENT_CPU:-1}; rounds interleaved direct → nginx-mtls → sekisho), raw data in \`$RESULTS\`"
  echo
  echo "What \"sekisho\" does per request here (\`tests/bench/sekisho.toml.tmpl\`, BENCH_ROUTE=$BENCH_ROUTE): TLS 1.3,"
  echo "client certificate required and verified against the device CA and its CRL, IP allowlist (checked at"
  echo "accept and in the decision), device re-checked against the CRL, device fingerprint and X-Forwarded-*"
  echo "forwarded, one hash-chained access record per request fsynced before the response (group commit),"
  echo "keep-alive pool to the upstream."
  if [[ $BENCH_ROUTE == protected ]]; then
    echo "The route is \`access = \"protected\"\`: every request also carries the session cookie of a user enrolled"
    echo "by TOTP (sekisho-launch.sh), looked up in sled, checked against its device, timeouts and the user's"
    echo "group, and the user is forwarded. nginx-mtls checks only that a cookie is present (401 without it)."
  else
    echo "The route is \`access = \"public\"\` with \`require_device = true\`: no session to check. nginx-mtls"
    echo "does the same **plus a cookie presence check** (401 without it). BENCH_ROUTE=protected measures the"
    echo "protected path with a live session (RESULTS-protected.md)."
  fi
  echo
  echo "Sekisho's access log after all runs (\`sekisho log verify\`, exit $verify_rc): $(echo "$verify_out" | tr '\n' ' ' | sed 's/  */ /g')."
  echo "The harness's \"log lines per response\" column is 0 for Sekisho: the harness truncates each peer's log"
  echo "between runs, which on a hash-chained log is tampering, so Sekisho writes its own and it is verified here."
  echo
  echo "## Goals (paired ratios: Sekisho ÷ nginx-mtls in the same round, median over rounds)"
  echo
  "${PY:-/usr/bin/python3}" - "$RESULTS" "$REF_TARGET" "$BENCH_ROUTE" <<'PYEOF'
import sys, os, statistics as st, collections
res, REF = sys.argv[1], sys.argv[2]
GW = "sekisho"
rows, mem = [], {}
for line in open(os.path.join(res, "raw.txt")):
    p = line.split()
    if not p: continue
    kv = dict(x.split("=", 1) for x in p[1:] if "=" in x)
    if p[0] == "RESULT": rows.append(kv)
    elif p[0] == "MEM": mem[kv["target"]] = kv
def f(x):
    try: return float(x)
    except Exception: return float("nan")
by = collections.defaultdict(dict)
for r in rows: by[(r["scenario"], r["target"])][r["round"]] = r
def paired(sc, key):
    a, b = by.get((sc, GW), {}), by.get((sc, REF), {})
    v = [f(a[k][key]) / f(b[k][key]) for k in a if k in b and f(b[k][key]) > 0]
    return st.median(v) if v else None
def med(sc, t, key):
    v = [f(r[key]) for r in by.get((sc, t), {}).values()]
    return st.median(v) if v else None
def fmt(x, p=0): return "–" if x is None else f"{x:,.{p}f}"
print(f"| goal | measured: sekisho | {REF} | ratio | met? |")
print("|---|---|---|---|---|")
ROUTE = sys.argv[3] if len(sys.argv) > 3 else "public"
kind, goal = ("protected with a live session", 0.9) if ROUTE == "protected" else ("pass-through", 1.0)
for sc, what in [("ka1k", f"{kind}, keep-alive 1 KiB, c=32 (req/s)"), ("ka64k", f"{kind}, keep-alive 64 KiB, c=32 (req/s)"), ("c1", f"{kind}, one admin, keep-alive 1 KiB (req/s)")]:
    if (sc, GW) in by:
        r = paired(sc, "rps")
        print(f"| {what} ≥ {goal} × nginx | {fmt(med(sc, GW, 'rps'))} | {fmt(med(sc, REF, 'rps'))} | {fmt(r, 2)} | {'yes' if r is not None and r >= goal else 'no'} |")
if ("hs", GW) in by:
    r = paired("hs", "rps")
    print(f"| full mTLS handshakes/s, c=32 ≥ 1.0 × nginx | {fmt(med('hs', GW, 'rps'))} | {fmt(med('hs', REF, 'rps'))} | {fmt(r, 2)} | {'yes' if r is not None and r >= 1.0 else 'no'} |")
if GW in mem:
    idle = f(mem[GW]["idle_rss_kb"]) / 1024
    ref_idle = f(mem.get(REF, {}).get("idle_rss_kb", "nan")) / 1024
    print(f"| idle RSS ≤ 16 MiB | {idle:.1f} MiB | {ref_idle:.1f} MiB (master+worker) | – | {'yes' if idle <= 16 else 'no'} |")
print()
print(f"| scenario | sekisho CPU µs/req | {REF} CPU µs/req | CPU ratio | sekisho p50 / p99 µs | {REF} p50 / p99 µs | sekisho err / bad (all rounds) | sekisho RSS max MiB |")
print("|---|---|---|---|---|---|---|---|")
for sc in ["ka1k", "ka64k", "hs", "c1", "hs1", "hsr"]:
    if (sc, GW) not in by: continue
    g = by[(sc, GW)].values()
    err = sum(int(r["err"]) for r in g); bad = sum(int(r["bad"]) for r in g)
    rss = max(f(r.get("peer_rss_max_kb")) for r in g) / 1024
    print(f"| {sc} | {fmt(med(sc, GW, 'peer_cpu_us_per_req'), 1)} | {fmt(med(sc, REF, 'peer_cpu_us_per_req'), 1)} | {fmt(paired(sc, 'peer_cpu_us_per_req'), 2)} | "
          f"{fmt(med(sc, GW, 'p50_us'))} / {fmt(med(sc, GW, 'p99_us'))} | {fmt(med(sc, REF, 'p50_us'))} / {fmt(med(sc, REF, 'p99_us'))} | {err} / {bad} | {rss:.1f} |")
PYEOF
  echo
  echo "## Functional checks (before the rounds)"
  echo
  cat "$RESULTS/functional.md"
  echo
  echo "## Harness tables"
  cat "$RESULTS/summary.md"
  echo
  echo "## Environment (from the harness)"
  echo
  echo '```'
  cat "$RESULTS/env.txt"
  echo '```'
  if grep -q . "$RESULTS/loadgen.stderr" 2>/dev/null && grep -qiE 'unexpected|error' "$RESULTS/loadgen.stderr"; then
    echo
    echo "## Loadgen complaints"
    echo
    echo '```'
    grep -iE 'unexpected|error' "$RESULTS/loadgen.stderr" | sort | uniq -c | head -40
    echo '```'
  fi
} >"$RESULTS_MD"
cp "$RESULTS_MD" "$RESULTS/RESULTS.md"
log "wrote $RESULTS_MD"
