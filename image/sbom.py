#!/usr/bin/env python3
"""A CycloneDX 1.5 SBOM of the crates compiled into the sekisho binary.

Reads `cargo metadata --locked` (the resolved graph for one target platform) and walks the
normal (not dev, not build, not proc-macro) dependencies from the `sekisho` package, so the list is what is
linked in, not everything in Cargo.lock. Each component carries its licence expression and
the SHA-256 of its .crate from Cargo.lock. Deterministic: no clock but SOURCE_DATE_EPOCH,
the serial number derived from the component list.

    python3 image/sbom.py --version 0.1.0 --target x86_64-unknown-linux-musl > sbom.cdx.json
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
import uuid


def is_proc_macro(package: dict) -> bool:
    """Proc macros run in the compiler; nothing of them (or of what only they use) is linked."""
    return any("proc-macro" in t["kind"] for t in package["targets"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--target", required=True)
    args = ap.parse_args()
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", args.target],
            check=True,
            capture_output=True,
        ).stdout
    )
    with open(os.path.join(meta["workspace_root"], "Cargo.lock"), "rb") as f:
        lock = tomllib.load(f)
    checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == "sekisho" and p["source"] is None)

    seen, stack, edges = set(), [root], {}
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        normal = [
            d["pkg"]
            for d in nodes[pid]["deps"]
            if any(k["kind"] is None for k in d["dep_kinds"]) and not is_proc_macro(packages[d["pkg"]])
        ]
        edges[pid] = sorted(set(normal))
        stack.extend(normal)

    def ref(pid: str) -> str:
        p = packages[pid]
        return f"pkg:cargo/{p['name']}@{p['version']}"

    components = []
    for pid in sorted(seen - {root}, key=ref):
        p = packages[pid]
        c = {"type": "library", "bom-ref": ref(pid), "name": p["name"], "version": p["version"], "purl": ref(pid)}
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        if p["source"] is None:
            c["scope"] = "required"
        checksum = checksums.get((p["name"], p["version"]))
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        components.append(c)

    listing = json.dumps([c["bom-ref"] for c in components]).encode()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(bytes=hashlib.sha256(listing).digest()[:16], version=5)}",
        "version": 1,
        "metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
            "tools": {"components": [{"type": "application", "name": "image/sbom.py"}]},
            "component": {
                "type": "application",
                "bom-ref": ref(root),
                "name": "sekisho",
                "version": args.version,
                "purl": ref(root),
                "licenses": [{"expression": packages[root].get("license") or "Apache-2.0"}],
                "properties": [{"name": "cargo:target", "value": args.target}],
            },
        },
        "components": components,
        "dependencies": [{"ref": ref(pid), "dependsOn": [ref(d) for d in edges[pid]]} for pid in sorted(seen, key=ref)],
    }
    json.dump(bom, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
