"""Writes an OCI image layout (`oci:DIR:TAG` for skopeo) of LAYERS layers of SIZE random bytes
each, uncompressed tars, for the registry mirror's tests: python3 make_image.py DIR TAG LAYERS SIZE.
"""
import hashlib
import io
import json
import os
import sys
import tarfile

out, tag, layers, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)


def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


descriptors, diff_ids = [], []
for i in range(layers):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        content = os.urandom(size)
        info = tarfile.TarInfo(f"layer{i}/data.bin")
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    digest = put(data)
    diff_ids.append(digest)
    descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)})

config = json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "config": {},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
}).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
    "layers": descriptors,
}).encode()
index = {
    "schemaVersion": 2,
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }],
}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
for d in descriptors:
    print(d["digest"])
