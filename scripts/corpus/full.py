"""Real-width UNets with random weights, for benchmarks only (export.py --full sd15|sdxl).

Same diffusers classes and exporter as the corpus, at the real checkpoints' widths (FULL in
corpus_models.py), SDPA path, dynamic batch / height / width / text length. The result is > 2 GB,
so it is saved as model.onnx + model.onnx.data (all tensors in one file, as diffusers' conversion
script saves its UNet) under .cache/corpus-full/<name>/, which is gitignored: never commit it.
A manifest.json beside it records the config, timings, sizes and the torch-side ground truth.
"""
import json
import shutil
import time
import types
from pathlib import Path

import onnx
import torch

import corpus_models as cm
import registry as reg
from ground_truth import AttentionRecorder


def _rss_gb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1e6, 1)
    except OSError:
        pass
    return None


def export(which, repo):
    import diffusers

    kind = {"sd15": "unet", "sdxl": "unet_xl"}[which]
    spec = reg.KINDS[kind]
    config = cm.FULL[which]
    out = Path(repo) / ".cache" / "corpus-full" / f"{which}_sdpa_dynamic"
    raw = out.with_name(out.name + ".raw")
    for d in (out, raw):
        shutil.rmtree(d, ignore_errors=True)
    raw.mkdir(parents=True)

    t0 = time.time()
    torch.manual_seed(1500 if which == "sd15" else 3000)
    model = getattr(diffusers, spec["cls"])(**config).eval()
    model.forward = types.MethodType(spec["forward"], model)
    g = torch.Generator().manual_seed(42)
    if kind == "unet":
        inputs = cm.unet_inputs(g, 1, 64, 64, 77, config["cross_attention_dim"])
    else:
        inputs = cm.unet_xl_inputs(g, 1, 64, 64, 77, config["cross_attention_dim"], cm.FULL_POOLED[which])
    t_build = time.time() - t0

    t0 = time.time()
    with torch.no_grad(), AttentionRecorder(model, (64, 64), 0, True) as rec:
        model(*inputs.values())
    t_forward = time.time() - t0

    t0 = time.time()
    with torch.no_grad():
        torch.onnx.export(
            model,
            tuple(inputs.values()),
            str(raw / "model.onnx"),
            input_names=spec["inputs"],
            output_names=spec["outputs"],
            dynamic_axes=spec["dynamic_axes"],
            opset_version=reg.OPSET,
            do_constant_folding=True,
        )
    t_export = time.time() - t0
    params = sum(p.numel() for p in model.parameters())
    del model

    # torch 1.13 writes one file per tensor beside a > 2 GB model; collect them into one .data file.
    t0 = time.time()
    proto = onnx.load(str(raw / "model.onnx"))
    out.mkdir(parents=True)
    onnx.save_model(proto, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data")
    del proto
    shutil.rmtree(raw)
    t_save = time.time() - t0

    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    doc = {
        "name": out.name,
        "note": "random weights, for benchmarks only; never commit",
        "family": f"{which}-unet (real width)",
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "opset": reg.OPSET,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "parameters": params,
        "inputs": spec["inputs"],
        "outputs": spec["outputs"],
        "dynamic_axes": {k: {str(d): n for d, n in v.items()} for k, v in spec["dynamic_axes"].items()},
        "bytes": sizes,
        "seconds": {"build": round(t_build, 1), "torch_forward_64x64": round(t_forward, 1),
                    "onnx_export": round(t_export, 1), "resave_one_data_file": round(t_save, 1)},
        "peak_rss_gb": _rss_gb(),
        "attention_at_latent64": rec.calls,
    }
    (out / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("name", "parameters", "bytes", "seconds", "peak_rss_gb")}, indent=1))
    return 0
