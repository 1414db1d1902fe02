#!/usr/bin/env bash
# Builds the Sekisho VM image: Debian's kernel, an initramfs with the static sekisho binary,
# a static busybox and image/vm/init (PID 1), and a GPT disk that boots under BIOS
# (syslinux, gptmbr) and UEFI (syslinux.efi as \EFI\BOOT\BOOTX64.EFI):
#   1 ESP (FAT)           kernel, initramfs, syslinux for both firmwares
#   2 sekisho-config      ext4, mounted read-only at /etc/sekisho: CONFIG_DIR's files
#   3 sekisho-state       ext4, mounted at /var/lib/sekisho: state/ and log/ (uid 65532)
#
#   image/build-vm.sh CONFIG_DIR [OUT_DIR]      (OUT_DIR default target/vm)
#
# CONFIG_DIR holds policy.toml and the files it names under /etc/sekisho/... ; the policy
# must use state_dir = "/var/lib/sekisho/state" and log_dir = "/var/lib/sekisho/log".
# KERNEL_CMDLINE (default "ip=dhcp") is appended to the kernel command line: see
# image/vm/init for ip=, sekisho.dns= and sekisho.ntp=.
# Outputs: sekisho.raw, sekisho.qcow2, vmlinuz, initrd.img.
# Needs (installed by .ci/run): apt-get, dpkg-deb, depmod/modprobe (kmod), busybox-static,
# cpio, gzip, mkfs.vfat (dosfstools), mtools, syslinux, syslinux-efi, syslinux-common,
# sgdisk (gdisk), mkfs.ext4 (e2fsprogs), qemu-img (qemu-utils), and image/build-binary.sh's.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONFIG=$(realpath "${1:?usage: image/build-vm.sh CONFIG_DIR [OUT_DIR]}")
OUT=$(realpath -m "${2:-target/vm}")
CMDLINE="console=ttyS0 quiet panic=-1 ${KERNEL_CMDLINE:-ip=dhcp}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
CACHE=$CARGO_TARGET_DIR/vm-cache
UID_GID=65532
MODULES=(virtio_pci virtio_blk virtio_net ext4)
for tool in python3 apt-get dpkg-deb depmod modprobe cpio gzip mkfs.vfat mcopy mmd syslinux sgdisk mkfs.ext4 qemu-img; do
  command -v "$tool" >/dev/null || { echo "build-vm: $tool is missing" >&2; exit 1; }
done
for f in /bin/busybox /usr/lib/syslinux/mbr/gptmbr.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 \
  /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi /usr/lib/syslinux/modules/efi64/ldlinux.e64; do
  [[ -f $f ]] || { echo "build-vm: $f is missing (busybox-static, syslinux, syslinux-efi, syslinux-common)" >&2; exit 1; }
done
# A dynamic busybox (Debian's `busybox`) has a PT_INTERP program header; it cannot run in
# an initramfs without a libc.
if python3 - /bin/busybox <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read(65536)
off, size, n = struct.unpack_from("<Q", d, 0x20)[0], struct.unpack_from("<H", d, 0x36)[0], struct.unpack_from("<H", d, 0x38)[0]
sys.exit(0 if any(struct.unpack_from("<I", d, off + i * size)[0] == 3 for i in range(n)) else 1)
PY
then
  echo "build-vm: /bin/busybox is dynamically linked; the initramfs needs busybox-static" >&2; exit 1
fi
[[ -f $CONFIG/policy.toml ]] || { echo "build-vm: $CONFIG/policy.toml is missing" >&2; exit 1; }

BIN=$(image/build-binary.sh)
"$BIN" policy check "$CONFIG/policy.toml" >/dev/null

# 1. Debian's kernel, downloaded once into the cache.
mkdir -p "$CACHE"
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
KPKG=$(kernel_package)
# A machine whose package lists were never fetched knows no kernel package yet.
[[ -n $KPKG ]] || { apt-get update -qq && KPKG=$(kernel_package); }
[[ -n $KPKG ]] || { echo "build-vm: no kernel package behind linux-image-amd64 (apt-get update?)" >&2; exit 1; }
KVER=${KPKG#linux-image-}
KDIR=$CACHE/$KPKG
if [[ ! -f $KDIR/boot/vmlinuz-$KVER ]]; then
  if ! (cd "$CACHE" && apt-get download "$KPKG" 2>/dev/null); then
    # Stale package lists name a version the mirror no longer has.
    apt-get update -qq
    KPKG=$(kernel_package)
    KVER=${KPKG#linux-image-}
    KDIR=$CACHE/$KPKG
    (cd "$CACHE" && apt-get download "$KPKG" 2>/dev/null)
  fi
  rm -rf "$KDIR"
  dpkg-deb -x "$CACHE/${KPKG}"_*.deb "$KDIR"
  depmod -b "$KDIR" "$KVER"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 2. The initramfs: sekisho, busybox (applets as links), the modules in load order.
R=$WORK/initramfs
mkdir -p "$R"/{bin,dev,proc,sys,tmp,etc/sekisho,etc/ssl/certs,var/lib/sekisho,lib/modules}
install -m 0755 "$BIN" "$R/sekisho"
install -m 0755 /bin/busybox "$R/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -s busybox "$R/bin/$applet"
done
install -m 0755 image/vm/init "$R/init"
install -m 0755 image/vm/udhcpc.script "$R/bin/udhcpc.script"
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && install -m 0644 /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
: >"$R/lib/modules/order"
for m in "${MODULES[@]}"; do
  modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  install -m 0644 "$ko" "$R/lib/modules/$(basename "$ko")"
  basename "$ko" >>"$R/lib/modules/order"
done
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -9 -n >"$WORK/initrd.img"

# 3. The ESP: kernel, initramfs, syslinux for BIOS (/syslinux) and UEFI (/EFI/BOOT).
cat >"$WORK/syslinux.cfg" <<CFG
DEFAULT sekisho
PROMPT 0
TIMEOUT 0
LABEL sekisho
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
CFG
ESP=$WORK/esp.img
ESP_MB=64
rm -f "$ESP"
mkfs.vfat -C -n SEKISHO-ESP -F 32 "$ESP" $((ESP_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/syslinux ::/EFI ::/EFI/BOOT
mcopy -i "$ESP" "$KDIR/boot/vmlinuz-$KVER" ::/vmlinuz
mcopy -i "$ESP" "$WORK/initrd.img" ::/initrd.img
mcopy -i "$ESP" /usr/lib/syslinux/modules/bios/ldlinux.c32 "$WORK/syslinux.cfg" ::/syslinux/
mcopy -i "$ESP" /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ESP" /usr/lib/syslinux/modules/efi64/ldlinux.e64 "$WORK/syslinux.cfg" ::/EFI/BOOT/
syslinux --install --directory /syslinux "$ESP"

# 4. Config (read-only at run time; root's, readable by the gateway's group) and state.
C=$WORK/config
cp -a "$CONFIG/." "$C/"
chown -R "0:$UID_GID" "$C"
find "$C" -type d -exec chmod 0750 {} +
find "$C" -type f -exec chmod 0640 {} +
CFG_IMG=$WORK/config.img
CFG_MB=16
truncate -s ${CFG_MB}M "$CFG_IMG"
mkfs.ext4 -q -F -L sekisho-config -d "$C" "$CFG_IMG"
S=$WORK/state
mkdir -p "$S/state" "$S/log"
chown "$UID_GID:$UID_GID" "$S/state" "$S/log"
chmod 0700 "$S/state" "$S/log"
STATE_IMG=$WORK/state.img
STATE_MB=256
truncate -s ${STATE_MB}M "$STATE_IMG"
mkfs.ext4 -q -F -L sekisho-state -d "$S" "$STATE_IMG"

# 5. The GPT disk: fixed partition starts (1 MiB aligned), protective MBR with syslinux's
#    GPT boot code, the ESP marked "legacy BIOS bootable" for gptmbr.
mkdir -p "$OUT"
RAW=$OUT/sekisho.raw
P1=2048
P2=$((P1 + ESP_MB * 2048))
P3=$((P2 + CFG_MB * 2048))
END=$((P3 + STATE_MB * 2048))
rm -f "$RAW"
truncate -s $(((END + 2048) * 512)) "$RAW"
sgdisk --clear \
  --new=1:$P1:$((P2 - 1)) --typecode=1:ef00 --change-name=1:ESP --attributes=1:set:2 \
  --new=2:$P2:$((P3 - 1)) --typecode=2:8300 --change-name=2:sekisho-config \
  --new=3:$P3:$((END - 1)) --typecode=3:8300 --change-name=3:sekisho-state \
  "$RAW" >/dev/null
dd if="$ESP" of="$RAW" bs=512 seek=$P1 conv=notrunc,sparse status=none
dd if="$CFG_IMG" of="$RAW" bs=512 seek=$P2 conv=notrunc,sparse status=none
dd if="$STATE_IMG" of="$RAW" bs=512 seek=$P3 conv=notrunc,sparse status=none
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none
qemu-img convert -O qcow2 "$RAW" "$OUT/sekisho.qcow2"
cp "$KDIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cp "$WORK/initrd.img" "$OUT/initrd.img"
echo "VM image: $RAW ($(du -h --apparent-size "$RAW" | cut -f1), GPT, BIOS+UEFI), $OUT/sekisho.qcow2 ($(du -h "$OUT/sekisho.qcow2" | cut -f1));"
echo "  kernel $KVER, initramfs $(stat -c %s "$WORK/initrd.img") bytes; command line: $CMDLINE"
