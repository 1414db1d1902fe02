#!/usr/bin/env bash
# Boots the VM image under qemu (TCG: no KVM here) twice, with BIOS (SeaBIOS) and with UEFI
# (OVMF), each from a fresh copy of the qcow2 disk, with a test policy on the config
# partition and the network from the kernel command line (qemu's user network: the guest
# is 10.0.2.15, the host's loopback is 10.0.2.2). An upstream on the host's loopback and a
# real TLS client (curl, with and without a device certificate) check allow and deny
# through the guest; the boot-to-serving time is printed.
#
#   image/test-vm.sh            (called by .ci/run)
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
for tool in qemu-system-x86_64 curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "test-vm: $tool is missing" >&2; exit 1; }
done
[[ -f $OVMF_CODE && -f $OVMF_VARS ]] || { echo "test-vm: OVMF is missing (Debian ovmf)" >&2; exit 1; }
say() { printf 'test-vm: %s\n' "$*"; }
fail() { printf 'test-vm: FAIL: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/sekisho-vm.XXXXXX)
UPSTREAM_PID= QEMU_PID=
cleanup() {
  set +e
  [[ -n $QEMU_PID ]] && kill "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
  [[ -n $UPSTREAM_PID ]] && kill "$UPSTREAM_PID" 2>/dev/null && wait "$UPSTREAM_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
. image/test-config.sh

SEKISHO=$(image/build-binary.sh)
make_test_www "$WORK/www"
UPORT=$(free_port)
python3 -m http.server "$UPORT" --bind 127.0.0.1 --directory "$WORK/www" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
make_test_config "$SEKISHO" "$WORK/config" "$WORK" "http://10.0.2.2:$UPORT" /var/lib/sekisho/state /var/lib/sekisho/log
KERNEL_CMDLINE="ip=10.0.2.15::10.0.2.2:255.255.255.0:sekisho:eth0:off" image/build-vm.sh "$WORK/config" "$WORK/vm"

boot() { # NAME [qemu firmware arguments…]
  local name=$1; shift
  local disk=$WORK/$name.qcow2 serial=$WORK/$name.serial port
  cp "$WORK/vm/sekisho.qcow2" "$disk"
  port=$(free_port)
  local t0; t0=$(date +%s.%N)
  qemu-system-x86_64 -machine q35,accel=tcg -m 512 -smp 1 -no-reboot -display none -monitor none \
    -serial "file:$serial" "$@" \
    -drive "file=$disk,if=virtio,format=qcow2" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8443" -device virtio-net-pci,netdev=n0 &
  QEMU_PID=$!
  local ready=
  for _ in $(seq 1 900); do
    grep -q 'sekisho: ready' "$serial" 2>/dev/null && { ready=1; break; }
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.2
  done
  [[ -n $ready ]] || { cat "$serial" >&2; fail "$name: not serving within 180 s"; }
  say "$name: boot to serving $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s (qemu TCG)"
  local C=(curl --silent --show-error --max-time 20 --cacert "$WORK/config/tls/cert.pem"
    --resolve "gw.test:$port:127.0.0.1" --output "$WORK/body" --write-out '%{http_code}')
  local DEV=(--cert "$WORK/laptop.p12.crt.pem" --key "$WORK/laptop.p12.key.pem")
  expect() { # STATUS PATH [curl args…]
    local want=$1 path=$2; shift 2
    local got; got=$("${C[@]}" "$@" "https://gw.test:$port$path") || true
    [[ $got == "$want" ]] || { cat "$serial" >&2; fail "$name: $path ${*:-}: HTTP $got, expected $want"; }
    say "$name: $path ${*:+(device) }→ $got"
  }
  expect 200 /
  grep -q 'shop page' "$WORK/body" || fail "$name: the upstream's page did not come through"
  expect 403 /staff/
  expect 200 /staff/ "${DEV[@]}"
  expect 403 /.git/config "${DEV[@]}"
  grep -qaE 'landlock.{0,24}(Full|Partial)' "$serial" || fail "$name: Landlock is not enforced in the guest"
  kill "$QEMU_PID"; wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
}

boot bios
cp "$OVMF_VARS" "$WORK/ovmf-vars.fd"
boot uefi -drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE" -drive "if=pflash,format=raw,file=$WORK/ovmf-vars.fd"
say ok
