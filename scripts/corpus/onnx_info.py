"""Small facts read back from a saved ONNX file."""
import hashlib

import onnx


def graph_io(model):
    """Graph inputs (initializers excluded) and outputs: name, element type, dims (str = symbolic)."""

    def desc(v):
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(), "shape": dims}

    inits = {i.name for i in model.graph.initializer}
    return [desc(v) for v in model.graph.input if v.name not in inits], [desc(v) for v in model.graph.output]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
