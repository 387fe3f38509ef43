"""Reference tensors as raw little-endian files plus a JSON description, readable from Node
(`new Float32Array(buf.buffer, buf.byteOffset, n)` / BigInt64Array) without any numpy format."""
import json
from pathlib import Path

import numpy as np
import torch

_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.int64: "int64", torch.int32: "int32"}


def save_set(root, model, set_name, inputs, outputs):
    """Write ref/<model>/<set>/<tensor>.bin; return the set's description (paths relative to root)."""
    folder = Path(root) / "ref" / model / set_name
    folder.mkdir(parents=True, exist_ok=True)
    desc = {"name": set_name, "inputs": [], "outputs": []}
    for kind, tensors in (("inputs", inputs), ("outputs", outputs)):
        for name, t in tensors.items():
            t = t.detach().contiguous()
            arr = t.numpy()
            le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            path = folder / f"{name}.bin"
            path.write_bytes(le.tobytes(order="C"))
            desc[kind].append(
                {
                    "name": name,
                    "dtype": _DTYPES[t.dtype],
                    "shape": list(arr.shape),
                    "file": str(path.relative_to(root)),
                }
            )
    (folder / "io.json").write_text(json.dumps(desc, indent=1) + "\n")
    return desc


def load_set(root, desc):
    """Read a set back (used by the derived-format checks in python)."""
    out = {}
    for kind in ("inputs", "outputs"):
        out[kind] = {}
        for d in desc[kind]:
            raw = (Path(root) / d["file"]).read_bytes()
            out[kind][d["name"]] = np.frombuffer(raw, dtype=np.dtype(d["dtype"]).newbyteorder("<")).reshape(d["shape"])
    return out
