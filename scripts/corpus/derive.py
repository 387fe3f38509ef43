"""Public ONNX formats derived from a corpus export, each made by the tool such files come from.

external-data  onnx.save(save_as_external_data=True, all_tensors_to_one_file=True), as diffusers'
               convert_stable_diffusion_checkpoint_to_onnx.py saves its UNet.
fp16           float16.convert_float_to_float16(keep_io_types=True) from onnxruntime's python tools
               (a maintained fork of onnxconverter-common's converter, whose own output does not
               load in onnxruntime here: see probe_occ_fp16.py).
ort-optimized  onnxruntime-node's InferenceSession with optimizedModelFilePath (ort-optimize.mjs).
fused-mha      onnxruntime's python transformer optimizer (onnxruntime/python/tools/transformers,
               fetched) with model_type unet / mmdit, fusions that write CUDA-only ops turned off.

The derived entry copies its source's references and ground truth (the torch module is the same).
"""
import copy
import io
import json
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import onnx

from onnx_info import graph_io, sha256

HERE = Path(__file__).resolve().parent


def _tool_dir(repo, prefix):
    hits = sorted((repo / ".cache").glob(prefix + "*"))
    if not hits:
        raise RuntimeError(f"no .cache/{prefix}*: run scripts/corpus/get-tools.sh first")
    return hits[-1]


def _external_data(src, dst):
    model = onnx.load(str(src))
    data = dst.name + ".data"
    for stale in (dst, dst.parent / data):
        if stale.exists():
            stale.unlink()
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    onnx.checker.check_model(str(dst))
    return {"external_data": data, "derivation": "onnx.save_model(save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=1024)"}


def _fp16(src, dst, repo):
    # onnxconverter-common 1.17's float16.py runs here but its output does not load in onnxruntime
    # (it retypes the outputs of Cast(to=float) nodes as float16 but leaves the Cast's `to`; see
    # probe_occ_fp16.py). onnxruntime's own copy of that converter -- the one its optimizer's
    # --float16 and Olive use for the public fp16 Stable Diffusion ONNX files -- rewrites such Casts.
    # It is called the way that optimizer calls it (OnnxModel.convert_float_to_float16, which also
    # re-sorts the graph topologically).
    with _ort_tools(repo) as tools:
        from onnx_model import OnnxModel

        m = OnnxModel(onnx.load(str(src)))
        m.convert_float_to_float16(keep_io_types=True)
        m.save_model_to_file(str(dst))
    onnx.checker.check_model(str(dst))
    return {
        "dtype": "float16 (float32 inputs/outputs)",
        "derivation": "onnxruntime/python/tools/transformers OnnxModel.convert_float_to_float16(keep_io_types=True) "
        f"(float16.py, default op_block_list) from {tools.parents[2].name}",
    }


def _ort_optimized(src, dst, level):
    r = subprocess.run(["node", str(HERE / "ort-optimize.mjs"), str(src), str(dst), level], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ort-optimize.mjs {level}: {r.stderr.strip() or r.stdout.strip()}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "derivation": f"onnxruntime-node {info['onnxruntime_node']} InferenceSession.create(graphOptimizationLevel: "
        f"'{level}', optimizedModelFilePath), CPU EP",
        "ort_level": level,
    }


# Fusions of onnxruntime's unet optimizer that write ops only the CUDA EP implements
# (GroupNorm, SkipGroupNorm, NhwcConv, BiasSplitGelu, BiasAdd) and packed QKV/KV MultiHeadAttention.
_CUDA_ONLY = ["enable_group_norm", "enable_skip_group_norm", "enable_nhwc_conv", "enable_bias_splitgelu",
              "enable_bias_add", "enable_packed_qkv", "enable_packed_kv"]


@contextmanager
def _ort_tools(repo):
    """Puts onnxruntime's fetched python tools on sys.path for the duration (flat imports)."""
    tools = _tool_dir(repo, "onnxruntime-transformers-") / "onnxruntime" / "python" / "tools"
    # optimizer.py / onnx_utils.py import `onnxruntime` at module level but use it only with
    # opt_level > 0 (never here): stubs_ort stands in for it.
    paths = [str(tools / "transformers"), str(tools), str(HERE / "stubs_ort")]
    sys.path[:0] = paths
    # Debian 12's onnx 1.12 names this helper make_tensor_sequence_value_info (same arguments);
    # symbolic_shape_infer.py needs it for SplitToSequence. Without it shape inference fails and
    # the fusions that depend on it (useless-Cast removal first) silently match nothing.
    if not hasattr(onnx.helper, "make_sequence_value_info"):
        onnx.helper.make_sequence_value_info = onnx.helper.make_tensor_sequence_value_info
    try:
        yield tools
    finally:
        del sys.path[: len(paths)]


def _fused_mha(src, dst, model_type, repo):
    with _ort_tools(repo) as tools:
        from fusion_options import FusionOptions
        from optimizer import optimize_model

        opts = FusionOptions(model_type)
        off = [k for k in _CUDA_ONLY if hasattr(opts, k)]
        for k in off:
            setattr(opts, k, False)
        log = io.StringIO()
        with redirect_stdout(log):
            m = optimize_model(str(src), model_type=model_type, num_heads=0, hidden_size=0, opt_level=0,
                               optimization_options=opts, use_gpu=False)
        if "failed in shape inference" in log.getvalue():
            raise RuntimeError(f"onnxruntime's optimizer: symbolic shape inference failed on {src.name}")
        stats = m.get_fused_operator_statistics()
        m.model.producer_version = f"python tools at onnxruntime {tools.parents[2].name.split('-')[-1]}"
        m.save_model_to_file(str(dst))
    # no onnx.checker here: onnxruntime registers contrib ops such as SimplifiedLayerNormalization in
    # the default domain, which onnx's checker rejects; verify.mjs loads the file in onnxruntime instead.
    return {
        "derivation": f"onnxruntime/python/tools/transformers/optimizer.py optimize_model(model_type='{model_type}', "
        f"opt_level=0, use_gpu=False) with {', '.join(off) + ' = False' if off else 'every default fusion (none writes CUDA-only ops)'}; from {tools.parents[2].name}",
        "fused_operators": {k: v for k, v in stats.items() if v},
    }


def make(name, source_entry, how, opts, out_dir, repo):
    src = out_dir / source_entry["file"]
    dst = out_dir / f"{name}.onnx"
    tmp = dst.with_name(dst.name + ".part.onnx")
    if how == "external-data":
        extra = _external_data(src, dst)
    elif how == "fp16":
        extra = _fp16(src, tmp, repo)
        os.replace(tmp, dst)
    elif how == "ort-optimized":
        extra = _ort_optimized(src, tmp, opts["level"])
        os.replace(tmp, dst)
    elif how == "fused-mha":
        extra = _fused_mha(src, tmp, opts["model_type"], repo)
        os.replace(tmp, dst)
    else:
        raise ValueError(how)
    entry = copy.deepcopy(source_entry)
    model = onnx.load(str(dst), load_external_data=False)
    entry["inputs"], entry["outputs"] = graph_io(model)
    entry.update(
        file=dst.name,
        external_data=None,
        derived_from=source_entry["file"],
        attention_path={"fused-mha": "fused-mha", "ort-optimized": "ort-optimized"}.get(how, source_entry["attention_path"]),
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        opset_imports={o.domain or "ai.onnx": o.version for o in model.opset_import},
    )
    entry.update(extra)
    data = out_dir / entry["external_data"] if entry.get("external_data") else None
    entry["bytes"] = dst.stat().st_size + (data.stat().st_size if data else 0)
    entry["sha256"] = sha256(dst)
    if entry["dtype"].startswith("float16"):
        entry["tolerance"] = 1e-2
    return entry
