"""Write a real OCI image layout to a directory, with nothing but the standard library.

Tests, the demo and the benchmarks push these images with skopeo
(`skopeo copy oci:DIR:TAG docker://…`), so no image has to be pulled from anywhere.
Layers are gzip-compressed tar files holding one file of pseudo-random bytes each,
so their size on the wire is about the size asked for.  The same --seed gives the
same digests; another seed gives other layers.

    python3 tools/oci_image.py OUT --tag 1.0 --layers 3 --layer-size 1M [--big-layer 64M]
    python3 tools/oci_image.py OUT --tag multi --platforms linux/amd64,linux/arm64
    python3 tools/oci_image.py OUT --tag 2.0 --base-layers 8M,512K --base-seed base1

Images written with the same --base-seed and --base-layers start with the same layers (a
shared base image), whatever their tag.

Prints the digest of the manifest (or of the index, with --platforms) on stdout.

``artifact()`` builds what signing tools attach to an image by tag name, to their published
formats: cosign's ``.sig`` (simple signing payload), ``.att`` (DSSE envelope of an in-toto
statement) and ``.sbom`` (SPDX JSON), and an OCI 1.1 referrers-tag-schema index
(``sha256-<hex>``: an index of a manifest with ``subject`` and ``artifactType``).
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = "2024-01-01T00:00:00Z"


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512K or 64M")
    return int(float(match[1]) * 1024 ** " KMG".index(match[2].upper() or " "))


class Layout:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w", encoding="utf-8") as handle:
            json.dump({"imageLayoutVersion": "1.0.0"}, handle)

    def put(self, data: bytes, media_type: str, **extra: object) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest), "wb") as handle:
            handle.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data), **extra}

    def tag(self, descriptor: dict, tag: str) -> None:
        path = os.path.join(self.root, "index.json")
        index = {"schemaVersion": 2, "manifests": []}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                index = json.load(handle)
        entry = dict(descriptor, annotations={"org.opencontainers.image.ref.name": tag})
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        index["manifests"].append(entry)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(index, handle)
        os.replace(path + ".tmp", path)


def make_layer(rng: random.Random, name: str, size: int) -> tuple[bytes, str]:
    payload = rng.randbytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    # level 1: the payload is random and will not shrink; spend no time trying.
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), diff_id


def write_image(layout: Layout, rng: random.Random, sizes: list[int], arch: str, created: str,
                base: tuple[str, list[int]] = ("", [])) -> dict:
    """``base``: (seed, sizes) of the first layers, the same in every image given the same."""
    layers, diff_ids = [], []
    base_rng = random.Random(f"base/{base[0]}/{arch}")
    for number, size in enumerate(base[1] + sizes):
        blob, diff_id = make_layer(base_rng if number < len(base[1]) else rng, f"layer-{number}.bin", size)
        layers.append(layout.put(blob, OCI_LAYER))
        diff_ids.append(diff_id)
    config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/layer-0.bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": "dockyard tools/oci_image.py"} for _size in diff_ids],
    }
    config_desc = layout.put(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": layers}
    return layout.put(json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST,
                      platform={"architecture": arch, "os": "linux"})


OCI_EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json",
             "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
ARTIFACT_LAYER_TYPES = {
    "signature": "application/vnd.dev.cosign.simplesigning.v1+json",
    "attestation": "application/vnd.dsse.envelope.v1+json",
    "sbom": "text/spdx+json",
}


class Artifact:
    """An artifact attached to ``subject``: the manifest stored under its tag, and what it needs.

    ``blobs`` maps digests to bytes; ``manifests`` are further (untagged) manifests, as
    (bytes, media type), that must be stored before ``body`` (a referrers index lists them).
    """

    def __init__(self, kind: str, subject: str, body: bytes, media_type: str, blobs: dict, manifests: list) -> None:
        self.body, self.media_type, self.blobs, self.manifests = body, media_type, blobs, manifests
        self.digest = "sha256:" + hashlib.sha256(body).hexdigest()
        algorithm, _colon, encoded = subject.partition(":")
        suffix = {"signature": ".sig", "attestation": ".att", "sbom": ".sbom", "referrers": ""}[kind]
        self.tag = f"{algorithm}-{encoded}{suffix}"  # the tag it is stored under


def _payload(kind: str, subject: str, reference: str) -> tuple[bytes, dict]:
    algorithm, _colon, encoded = subject.partition(":")
    if kind == "signature":
        document = {"critical": {"identity": {"docker-reference": reference},
                                 "image": {"docker-manifest-digest": subject},
                                 "type": "cosign container image signature"}, "optional": None}
        return json.dumps(document).encode(), {"dev.cosignproject.cosign/signature": "MEUCIQ=="}
    if kind == "attestation":
        statement = {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://slsa.dev/provenance/v0.2",
                     "subject": [{"name": reference, "digest": {algorithm: encoded}}],
                     "predicate": {"builder": {"id": "dockyard tools/oci_image.py"}}}
        envelope = {"payloadType": "application/vnd.in-toto+json",
                    "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
                    "signatures": [{"keyid": "", "sig": "MEUCIQ=="}]}
        return json.dumps(envelope).encode(), {"predicateType": statement["predicateType"]}
    sbom = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": reference,
            "dataLicense": "CC0-1.0", "documentNamespace": "https://dockyard.test/spdx/" + encoded, "packages": []}
    return json.dumps(sbom).encode(), {}


def artifact(kind: str, subject: dict, reference: str = "registry.test/app") -> Artifact:
    """The artifact of ``kind`` (signature, attestation, sbom, referrers) for the manifest ``subject``
    (a descriptor: mediaType, digest, size). The payload is well-formed, its signatures are not real."""
    blobs = {OCI_EMPTY["digest"]: b"{}"}
    if kind == "referrers":
        payload, _annotations = _payload("sbom", subject["digest"], reference)
        layer = {"mediaType": "application/spdx+json", "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                 "size": len(payload)}
        blobs[layer["digest"]] = payload
        referrer = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
                    "config": OCI_EMPTY, "layers": [layer], "subject": dict(subject),
                    "annotations": {"org.opencontainers.image.created": EPOCH}}
        referrer_body = json.dumps(referrer, sort_keys=True).encode()
        entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + hashlib.sha256(referrer_body).hexdigest(),
                 "size": len(referrer_body), "artifactType": referrer["artifactType"],
                 "annotations": referrer["annotations"]}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        return Artifact(kind, subject["digest"], json.dumps(index, sort_keys=True).encode(), OCI_INDEX, blobs,
                        [(referrer_body, OCI_MANIFEST)])
    payload, annotations = _payload(kind, subject["digest"], reference)
    layer = {"mediaType": ARTIFACT_LAYER_TYPES[kind], "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
             "size": len(payload), "annotations": annotations}
    blobs[layer["digest"]] = payload
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}, sort_keys=True).encode()
    config_desc = {"mediaType": OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                   "size": len(config)}
    blobs[config_desc["digest"]] = config
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": [layer]}
    return Artifact(kind, subject["digest"], json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST, blobs, [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory of the OCI layout (created or extended)")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--layers", type=int, default=2, help="number of small layers")
    parser.add_argument("--layer-size", type=parse_size, default=parse_size("256K"))
    parser.add_argument("--big-layer", type=parse_size, default=0, help="add one layer of this size")
    parser.add_argument("--platforms", default="", help="comma-separated os/arch list: write an index")
    parser.add_argument("--seed", default="dockyard")
    parser.add_argument("--base-layers", type=lambda text: [parse_size(size) for size in text.split(",") if size],
                        default=[], help="comma-separated sizes of shared first layers (see --base-seed)")
    parser.add_argument("--base-seed", default="base", help="images with the same one share their base layers")
    parser.add_argument("--created", default=EPOCH, help="creation time written in the image config")
    args = parser.parse_args(argv)

    if args.layers < 0 or (args.layers == 0 and not args.big_layer and not args.base_layers):
        parser.error("an image needs at least one layer")
    rng = random.Random(f"{args.seed}/{args.tag}")
    sizes = [args.layer_size] * args.layers + ([args.big_layer] if args.big_layer else [])
    layout = Layout(args.out)
    if args.platforms:
        children = []
        for platform in args.platforms.split(","):
            os_name, _slash, arch = platform.partition("/")
            if os_name != "linux" or not arch:
                parser.error(f"platform {platform!r} is not linux/ARCH")
            children.append(write_image(layout, rng, sizes, arch, args.created, (args.base_seed, args.base_layers)))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
        top = layout.put(json.dumps(index, sort_keys=True).encode(), OCI_INDEX)
    else:
        top = write_image(layout, rng, sizes, "amd64", args.created, (args.base_seed, args.base_layers))
        top.pop("platform")
    layout.tag(top, args.tag)
    print(top["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
