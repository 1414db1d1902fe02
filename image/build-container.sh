#!/usr/bin/env bash
# Builds Sekisho's container image without a daemon: the static (musl) binary in a
# FROM-scratch layer, a numeric non-root user, volumes for config, state and log, an
# OCI layout with a docker-loadable manifest.json, and a CycloneDX SBOM of the crates
# inside. Bit-identical when built twice from the same commit (SOURCE_DATE_EPOCH; sorted
# tar with fixed owners and times; gzip -n; the binary built with remapped paths by
# image/build-binary.sh).
#
#   image/build-container.sh [OUT_DIR]        (default target/image)
#
# Outputs in OUT_DIR: oci/ (the OCI layout), sekisho-image.tar (the same layout as one
# tar: `docker load -i`, `podman load -i`, `skopeo copy oci-archive:`), sekisho.cdx.json
# (the SBOM, also inside the image at /sbom/sekisho.cdx.json) and digest (the manifest's).
# Needs what image/build-binary.sh needs, and python3, tar, gzip, sha256sum (.ci/run
# installs them; this script does not).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$(realpath -m "${1:-target/image}")
TARGET=x86_64-unknown-linux-musl
# The numeric user the image runs as (no /etc/passwd in a scratch image).
IMAGE_UID=65532
IMAGE_GID=65532
VERSION=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="sekisho"))')
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

for tool in python3 tar gzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-container: $tool is missing" >&2; exit 1; }
done

# 1. The static binary (image/build-binary.sh).
BIN=$(image/build-binary.sh)

# 2. The root filesystem of the single layer.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/rootfs
mkdir -p "$R/etc/sekisho" "$R/var/lib/sekisho" "$R/var/log/sekisho" "$R/etc/ssl/certs" "$R/sbom"
install -m 0755 "$BIN" "$R/sekisho"
# CA roots for SMTP and webhook TLS (rustls-native-certs reads /etc/ssl/certs).
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
fi
python3 image/sbom.py --version "$VERSION" --target "$TARGET" >"$R/sbom/sekisho.cdx.json"
chmod 0644 "$R/sbom/sekisho.cdx.json"
chmod 0755 "$R" "$R/etc" "$R/etc/sekisho" "$R/etc/ssl" "$R/etc/ssl/certs" "$R/var" "$R/var/lib" "$R/var/log" "$R/sbom"
chmod 0700 "$R/var/lib/sekisho" "$R/var/log/sekisho"
chown -R 0:0 "$R"
chown "$IMAGE_UID:$IMAGE_GID" "$R/var/lib/sekisho" "$R/var/log/sekisho"
find "$R" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

# A tar that depends only on the tree: sorted names, fixed times, numeric owners, no
# atime/ctime, no user or group names.
det_tar() { # DIR OUTPUT
  tar --create --file "$2" --directory "$1" --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --no-acls --no-xattrs --no-selinux .
}
det_tar "$R" "$WORK/layer.tar"
gzip -n -9 -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"

# 3. The OCI layout (blobs, manifest, index) and docker's manifest.json beside it.
rm -rf "$OUT"
L=$OUT/oci
mkdir -p "$L/blobs/sha256"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
blob() { local d; d=$(sha "$1"); cp "$1" "$L/blobs/sha256/$d"; echo "$d"; }
DIFF_ID=$(sha "$WORK/layer.tar")
LAYER=$(blob "$WORK/layer.tar.gz")
LAYER_SIZE=$(size "$WORK/layer.tar.gz")
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
export VERSION CREATED DIFF_ID IMAGE_UID IMAGE_GID
python3 - >"$WORK/config.json" <<'PY'
import json, os
e = os.environ
print(json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "created": e["CREATED"],
    "config": {
        "User": f'{e["IMAGE_UID"]}:{e["IMAGE_GID"]}',
        "Entrypoint": ["/sekisho"],
        "Cmd": ["run", "--policy", "/etc/sekisho/policy.toml"],
        "ExposedPorts": {"8443/tcp": {}},
        "Volumes": {"/etc/sekisho": {}, "/var/lib/sekisho": {}, "/var/log/sekisho": {}},
        "WorkingDir": "/",
        "StopSignal": "SIGTERM",
        "Labels": {
            "org.opencontainers.image.title": "sekisho",
            "org.opencontainers.image.version": e["VERSION"],
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.description": "Sekisho admin-access gateway; run with a read-only root",
        },
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + e["DIFF_ID"]]},
    "history": [{"created": e["CREATED"], "created_by": "image/build-container.sh"}],
}, sort_keys=True, separators=(",", ":")))
PY
CONFIG=$(blob "$WORK/config.json")
CONFIG_SIZE=$(size "$WORK/config.json")
export CONFIG CONFIG_SIZE LAYER LAYER_SIZE
python3 - >"$WORK/manifest.json" <<'PY'
import json, os
e = os.environ
print(json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + e["CONFIG"], "size": int(e["CONFIG_SIZE"])},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + e["LAYER"], "size": int(e["LAYER_SIZE"])}],
}, sort_keys=True, separators=(",", ":")))
PY
MANIFEST=$(blob "$WORK/manifest.json")
MANIFEST_SIZE=$(size "$WORK/manifest.json")
export MANIFEST MANIFEST_SIZE
python3 - >"$L/index.json" <<'PY'
import json, os
e = os.environ
print(json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": "sha256:" + e["MANIFEST"], "size": int(e["MANIFEST_SIZE"]),
                   "annotations": {"org.opencontainers.image.ref.name": e["VERSION"],
                                   "io.containerd.image.name": "sekisho:" + e["VERSION"]}}],
}, sort_keys=True, separators=(",", ":")))
PY
printf '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
# docker load reads manifest.json (gzip layers are accepted).
printf '[{"Config":"blobs/sha256/%s","RepoTags":["sekisho:%s"],"Layers":["blobs/sha256/%s"]}]' \
  "$CONFIG" "$VERSION" "$LAYER" >"$L/manifest.json"
find "$L" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
chmod -R u=rwX,go=rX "$L"
det_tar "$L" "$OUT/sekisho-image.tar"
cp "$R/sbom/sekisho.cdx.json" "$OUT/sekisho.cdx.json"
echo "sha256:$MANIFEST" >"$OUT/digest"

BIN_SIZE=$(size "$BIN")
UNPACKED=$(size "$WORK/layer.tar")
TOTAL=$(size "$OUT/sekisho-image.tar")
echo "sekisho $VERSION: binary $BIN_SIZE bytes (static, $TARGET); image $UNPACKED bytes unpacked, $LAYER_SIZE bytes compressed; image tar $TOTAL bytes"
echo "manifest digest sha256:$MANIFEST"
echo "image: $OUT/sekisho-image.tar (docker load -i); OCI layout: $L; SBOM: $OUT/sekisho.cdx.json"
# The budget is on the unpacked size (what `docker images` shows), the stricter of the two.
LIMIT=$((10 * 1024 * 1024))
if ((UNPACKED > LIMIT)); then
  echo "build-container: the image unpacks to $UNPACKED bytes, over the 10 MiB budget" >&2
  exit 1
fi
