"""Writes models/corpus/README.md from manifest.json and check.json (the onnxruntime-node check)."""
import json
from pathlib import Path

HEAD = """# toma's corpus of real diffusers ONNX exports

Small, random-weight (seeded) models built from the **real diffusers 0.31.0 model code** and
exported by torch 1.13's TorchScript ONNX exporter at opset 17, plus the public variants derived
from them (external data, fp16, graphs saved by onnxruntime, fused com.microsoft
MultiHeadAttention). Made by `scripts/corpus/export.py` (its header says how to rebuild from
scratch); the configs are in `scripts/corpus/corpus_models.py`. Nothing here is trained: the weights
are PyTorch's default initialisation under a fixed seed.

`manifest.json` describes every file: family, attention path, shapes, opset, dtype, inputs/outputs,
the reference input/output sets (`ref/<model>/<set>/*.bin`, raw little-endian, described in
`io.json` and in the manifest), the tolerance, and the **ground truth**: every diffusers
`Attention` module in execution order with kind (self / cross / joint), heads, head_dim, channels,
RoPE, SD3 `context_pre_only`, and the image token grid [H, W] it sees for each reference set. The
ground truth comes from forward hooks on the torch module tree (`scripts/corpus/ground_truth.py`),
never from the ONNX graph, so a patcher can be checked against it. Derived files share their
source's references and ground truth.

Reference sets: `ref` is small and non-square (latent H != W, so a transposed grid shows);
`latent64` is a 64x64 latent (the size toma's speed goals are stated at). Static files have one
set at their fixed size.
"""


def _fmt_bytes(n):
    return f"{n / 1e6:.2f} MB"


def _grids(entry):
    first = entry["references"][0]["name"]
    seen = []
    for a in entry["attention"]:
        if a["kind"] in ("self", "joint"):
            g = "x".join(map(str, a["grid"][first]))
            if g not in seen:
                seen.append(g)
    return f"{first}: " + ", ".join(seen)


def _shapes(entry):
    ins = entry["inputs"]
    return "<br>".join(f"`{d['name']}` [{', '.join(map(str, d['shape']))}] {d['dtype']}" for d in ins[:2]) + (
        "<br>..." if len(ins) > 2 else ""
    )


def write(out_dir):
    out_dir = Path(out_dir)
    m = json.loads((out_dir / "manifest.json").read_text())
    check_path = out_dir / "check.json"
    check = json.loads(check_path.read_text()) if check_path.exists() else {"results": {}}
    rows = [
        "| file | family | attention path | shapes | size | self / cross / joint | grids (self+joint) | onnxruntime-node check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = 0
    for name, e in m["files"].items():
        total += e["bytes"]
        c = e["counts"]
        r = check["results"].get(name)
        if r is None:
            verdict = "not checked"
        elif not r["loads"]:
            verdict = f"**does not load**: {r.get('error', '')[:160]}"
        else:
            parts = []
            for s, v in r["sets"].items():
                parts.append(f"{s}: " + (f"ERROR {v['error'][:120]}" if "error" in v else f"{v['relL2']:.1e} {'ok' if v['ok'] else 'FAIL'}"))
            verdict = ("PASS " if r["ok"] else "**FAIL** ") + "; ".join(parts)
        file = e["file"] + (f" + {e['external_data']}" if e.get("external_data") else "")
        path = e["attention_path"] + ("" if e["derived_from"] is None else f" (from {e['derived_from']})")
        dtype = "" if e["dtype"] == "float32" else f", {e['dtype']}"
        rows.append(
            f"| `{file}` | {e['family']} | {path} | {e['shapes']}{dtype}<br>{_shapes(e)} | {_fmt_bytes(e['bytes'])} | "
            f"{c['self']} / {c['cross']} / {c['joint']} | {_grids(e)} | {verdict} |"
        )
    ref_bytes = sum(p.stat().st_size for p in (out_dir / "ref").rglob("*") if p.is_file())
    meta = sum((out_dir / f).stat().st_size for f in ("manifest.json", "check.json") if (out_dir / f).exists())
    body = [
        HEAD,
        "## Files",
        "",
        *rows,
        "",
        f"Models: {_fmt_bytes(total)} in {len(m['files'])} files; reference tensors {_fmt_bytes(ref_bytes)}; "
        f"manifest and check {_fmt_bytes(meta)}.",
        "",
    ]
    if check["results"]:
        body += [
            "## Check",
            "",
            f"`node scripts/corpus/verify.mjs` with onnxruntime-node {check.get('onnxruntime_node')} (CPU EP), "
            f"node {check.get('node')}, {check.get('date')}: every file is loaded and run on every stored "
            "reference set; the number is the relative L2 difference from torch's output (tolerance 1e-4 for "
            "float32, 1e-2 for float16 weights). Its output:",
            "",
            "```",
            *check.get("log", []),
            "```",
            "",
        ]
    notes = out_dir / "NOTES.md"
    if notes.exists():
        body += [notes.read_text().strip(), ""]
    tmp = out_dir / "README.md.part"
    tmp.write_text("\n".join(body))
    tmp.replace(out_dir / "README.md")
