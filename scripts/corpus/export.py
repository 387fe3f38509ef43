#!/usr/bin/python3
"""toma's corpus of real diffusers ONNX exports (models/corpus/): one entry point.

WHAT IT MAKES
  Small, seeded, random-weight models of the real diffusers 0.31.0 classes (UNet2DConditionModel as
  SD 1.5 / SD 2.x / SDXL, SD3Transformer2DModel as SD3 / SD3.5, FluxTransformer2DModel,
  PixArtTransformer2DModel, DiTTransformer2DModel), exported by torch's TorchScript ONNX exporter
  at opset 17, fp32; then public variants derived from them (derive.py: external data, fp16 by
  onnxruntime's copy of the float16 converter, graphs saved by onnxruntime-node after its
  optimisations, com.microsoft Attention/MultiHeadAttention fused by onnxruntime's python
  transformer optimizer). For each: seeded reference
  inputs and torch's outputs (raw little-endian .bin + JSON), and ground truth about every attention
  module taken from the torch module tree (scripts/corpus/ground_truth.py). Everything lands in
  models/corpus/ with manifest.json and README.md. The model code is diffusers' own, unmodified;
  see corpus_models.py for the configs and registry.py for the file list.

FROM SCRATCH ON DEBIAN 12 (bookworm; no PyPI needed)
  apt-get install -y python3-torch python3-onnx python3-numpy python3-packaging python3-sympy \
      python3-pil python3-regex python3-requests python3-filelock python3-yaml python3-tqdm \
      python3-importlib-metadata nodejs npm git
  npm ci                                          # onnxruntime-node (verify + ort-optimized files)
  scripts/corpus/get-diffusers.sh [MIRROR]        # -> .cache/diffusers-v0.31.0 (git clone if no mirror)
  scripts/corpus/get-tools.sh [ORT_MIRROR] [OCC_MIRROR]   # -> .cache/onnxruntime-transformers-*,
                                                  #    .cache/onnxconverter-common-* (pinned commits)
  /usr/bin/python3 scripts/corpus/export.py       # everything: export, derive, verify, manifest, README
  Use /usr/bin/python3 (Debian's, with torch 1.13); a pyenv python3 on PATH has no torch.

USAGE
  export.py                 all files, then the onnxruntime-node check and README
  export.py --list          list the corpus files and how each is made
  export.py --only NAME     (re)make one file (repeatable); its source is made first if missing
  export.py --verify        only run scripts/corpus/verify.mjs and rewrite README.md
  export.py --full sd15|sdxl  REAL-width UNet with random weights to .cache/corpus-full/ (external
                            data, > 2 GB; for benchmarks only, never committed)

WHAT IS STUBBED OR POLYFILLED, AND WHY
  stubs/huggingface_hub, stubs/safetensors: import-only stand-ins (Debian has neither); every
    callable refuses, since nothing here downloads or loads checkpoints.
  sdpa_polyfill.py: torch 1.13 has no F.scaled_dot_product_attention, which diffusers 0.31's
    AttnProcessor2_0 / JointAttnProcessor2_0 / FluxAttnProcessor2_0 require. The polyfill is an
    autograd.Function whose ONNX symbolic writes exactly torch 2.1's SDPA symbolic (see its docstring).
  The "classic" files set diffusers' AttnProcessor explicitly (baddbmm(beta=0) + softmax + bmm).
  exporter_fixes.py: two torch 1.13 symbolics replaced by their torch 2.x versions: layer_norm
    without affine (1.13 writes an empty scale input; SD3 / Flux / PixArt / DiT) and single-count
    repeat_interleave (1.13 writes SplitToSequence + Loop; Flux's RoPE table).
  stubs_ort/onnxruntime: import-only stand-in for the onnxruntime python package, which
    onnxruntime's fetched optimizer imports but does not use at opt_level=0.
  onnxconverter-common's own float16 converter runs, but its output does not load in onnxruntime
    (probe_occ_fp16.py shows the errors); the fp16 files use onnxruntime's fork of it.

OTHER FILES HERE
  corpus_models.py (configs, forwards, seeded inputs), registry.py (file list, reference sizes),
  ground_truth.py (attention records from the module tree), refio.py (.bin + JSON), derive.py,
  ort-optimize.mjs (optimizedModelFilePath), verify.mjs (onnxruntime-node check -> check.json),
  readme.py (README.md from manifest.json + check.json + models/corpus/NOTES.md), full.py (--full).

DETERMINISM
  Weights: torch.manual_seed(seed) right before the model is built (same seed = same weights, e.g.
  all four SD 1.5 files share theirs). Inputs: a torch.Generator seeded per (model seed, set).
  Re-running reproduces the same weights, inputs, references and .onnx bytes on the same machine
  (checked: a rebuild from scratch gave identical sha256 for every file but the ort-all one, whose
  generated node names onnxruntime varies); other CPUs may differ in the last bits of the
  reference outputs.
"""
import argparse
import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "models" / "corpus"
CACHE = REPO / ".cache"
DIFFUSERS_SRC = Path(os.environ.get("TOMA_DIFFUSERS_SRC", CACHE / "diffusers-v0.31.0" / "src"))

if not (DIFFUSERS_SRC / "diffusers" / "__init__.py").exists():
    sys.exit(f"no diffusers sources at {DIFFUSERS_SRC}: run scripts/corpus/get-diffusers.sh first")
sys.path[:0] = [str(HERE), str(HERE / "stubs"), str(DIFFUSERS_SRC)]
warnings.filterwarnings("ignore")  # TracerWarnings from diffusers' shape checks; they are expected

import sdpa_polyfill  # noqa: E402

sdpa_polyfill.install()

import onnx  # noqa: E402
import torch  # noqa: E402

import diffusers  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor  # noqa: E402

import exporter_fixes  # noqa: E402
import registry as reg  # noqa: E402
import refio  # noqa: E402
from onnx_info import graph_io, sha256  # noqa: E402
from ground_truth import AttentionRecorder  # noqa: E402

exporter_fixes.install(reg.OPSET)

TOL = {"float32": 1e-4, "float16": 1e-2}


def build(kind, config, seed, path):
    spec = reg.KINDS[kind]
    torch.manual_seed(seed)
    model = getattr(diffusers, spec["cls"])(**config).eval()
    if path == "classic":
        model.set_attn_processor(AttnProcessor())
    model.forward = types.MethodType(spec["forward"], model)
    return model


def counts(attn):
    c = {"self": 0, "cross": 0, "joint": 0}
    for a in attn:
        c[a["kind"]] += 1
    return c


def export_base(name):
    kind, family, config, seed, path, shapes, sets = reg.BASE[name]
    spec = reg.KINDS[kind]
    model = build(kind, config, seed, path)
    references, attention = [], None
    ref_inputs = None
    for i, (set_name, (b, h, w, t)) in enumerate(sets.items()):
        g = torch.Generator().manual_seed(seed * 100 + i)
        inputs = spec["make"](g, config, b, h, w, t)
        assert list(inputs) == spec["inputs"], (list(inputs), spec["inputs"])
        grid0 = spec["grid0"](config, h, w)
        with torch.no_grad(), AttentionRecorder(model, grid0, t if spec.get("text_in_self") else 0, spec["unet"]) as rec:
            out = model(*inputs.values())
        desc = refio.save_set(OUT, name, set_name, inputs, {spec["outputs"][0]: out})
        desc.update(batch=b, latent=[h, w], text_tokens=t)
        references.append(desc)
        calls = rec.calls
        if attention is None:
            attention = [dict(c, grid={set_name: c["grid"]}, image_tokens={set_name: c["image_tokens"]},
                              text_tokens={set_name: c["text_tokens"]}, batch=None) for c in calls]
            for a in attention:
                a.pop("batch")
        else:
            if [c["module"] for c in calls] != [a["module"] for a in attention]:
                raise RuntimeError(f"{name}: attention call order differs between reference sets")
            for a, c in zip(attention, calls):
                a["grid"][set_name] = c["grid"]
                a["image_tokens"][set_name] = c["image_tokens"]
                a["text_tokens"][set_name] = c["text_tokens"]
        if ref_inputs is None:
            ref_inputs = inputs
    for i, a in enumerate(attention):
        a["index"] = i

    file = OUT / f"{name}.onnx"
    tmp = file.with_suffix(".onnx.part")
    with torch.no_grad():
        torch.onnx.export(
            model,
            tuple(ref_inputs.values()),
            str(tmp),
            input_names=spec["inputs"],
            output_names=spec["outputs"],
            dynamic_axes=spec["dynamic_axes"] if shapes == "dynamic" else None,
            opset_version=reg.OPSET,
            do_constant_folding=True,
        )
    os.replace(tmp, file)
    proto = onnx.load(str(file))
    onnx.checker.check_model(proto)
    ins, outs = graph_io(proto)
    params = sum(p.numel() for p in model.parameters())
    return {
        "file": file.name,
        "external_data": None,
        "bytes": file.stat().st_size,
        "sha256": sha256(file),
        "family": family,
        "model_class": spec["cls"],
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "exporter": "torch.onnx.export (TorchScript), do_constant_folding=True",
        "attention_path": path,
        "attention_processors": sorted({a["processor"] for a in attention}),
        "derived_from": None,
        "shapes": shapes,
        "accepts": reg.accepts(name),
        "dynamic_axes": {k: {str(d): n for d, n in v.items()} for k, v in spec["dynamic_axes"].items()}
        if shapes == "dynamic"
        else None,
        "opset": reg.OPSET,
        "dtype": "float32",
        "parameters": params,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "seed": seed,
        "inputs": ins,
        "outputs": outs,
        "references": references,
        "tolerance": TOL["float32"],
        "attention": attention,
        "counts": counts(attention),
    }


def load_manifest():
    p = OUT / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {"files": {}}


def save_manifest(m):
    m["about"] = (
        "toma's corpus of real diffusers exports; made by scripts/corpus/export.py. "
        "Ground truth ('attention') comes from the torch module tree, never from the ONNX graphs. "
        "'grid', 'image_tokens', 'text_tokens' are per reference set."
    )
    m["files"] = {k: m["files"][k] for k in reg.ORDER if k in m["files"]}
    tmp = OUT / "manifest.json.part"
    tmp.write_text(json.dumps(m, indent=1) + "\n")
    os.replace(tmp, OUT / "manifest.json")


def make(name, manifest, made):
    if name in made:
        return
    if name in reg.BASE:
        print(f"[export] {name}", flush=True)
        manifest["files"][name] = export_base(name)
    else:
        import derive

        source, how, opts = reg.DERIVED[name]
        if source not in manifest["files"] or not (OUT / manifest["files"][source]["file"]).exists():
            make(source, manifest, made)
        print(f"[derive] {name} <- {source} ({how})", flush=True)
        manifest["files"][name] = derive.make(name, manifest["files"][source], how, opts, OUT, REPO)
    made.add(name)
    save_manifest(manifest)


def verify():
    r = subprocess.run(["node", str(HERE / "verify.mjs")], cwd=REPO)
    if r.returncode != 0:
        print("verify.mjs reported failures (see models/corpus/check.json)", file=sys.stderr)
    import readme

    readme.write(OUT)
    return r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--full", choices=sorted(["sd15", "sdxl"]))
    a = ap.parse_args()
    if a.list:
        for n in reg.ORDER:
            if n in reg.BASE:
                kind, family, _, seed, path, shapes, sets = reg.BASE[n]
                print(f"{n:34s} {family:13s} {path:8s} {shapes:8s} seed {seed}, sets {list(sets)}")
            else:
                src, how, opts = reg.DERIVED[n]
                print(f"{n:34s} {how:13s} from {src} {opts or ''}")
        return 0
    if a.full:
        import full

        return full.export(a.full, REPO)
    if a.verify:
        return verify()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest()
    names = a.only or reg.ORDER
    for n in names:
        if n not in reg.ORDER:
            sys.exit(f"unknown corpus file {n!r}; see --list")
    made = set()
    for n in names:
        make(n, manifest, made)
    if not a.only:
        return verify()
    return 0


if __name__ == "__main__":
    sys.exit(main())
