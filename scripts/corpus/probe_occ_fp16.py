#!/usr/bin/python3
"""Shows why the corpus' fp16 files are not made with onnxconverter-common's converter.

Runs onnxconverter-common's float16.convert_float_to_float16(keep_io_types=True) (fetched source,
scripts/corpus/get-tools.sh) on the fp32 corpus files given (default: the two the corpus converts),
writes the results to .cache/corpus-probe/ (never committed) and tries to load each in
onnxruntime-node. Usage: /usr/bin/python3 scripts/corpus/probe_occ_fp16.py [name ...]
"""
import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import onnx

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[2]
tool = sorted((REPO / ".cache").glob("onnxconverter-common-*"))[-1] / "onnxconverter_common" / "float16.py"
spec = importlib.util.spec_from_file_location("occ_float16", tool)
occ = importlib.util.module_from_spec(spec)
spec.loader.exec_module(occ)

out = REPO / ".cache" / "corpus-probe"
out.mkdir(parents=True, exist_ok=True)
files = []
for name in sys.argv[1:] or ["sd15_sdpa_dynamic", "flux_sdpa_dynamic"]:
    m = occ.convert_float_to_float16(onnx.load(str(REPO / "models" / "corpus" / f"{name}.onnx")), keep_io_types=True)
    dst = out / f"{name}_occ-fp16.onnx"
    onnx.save_model(m, str(dst))
    files.append(str(dst))
loader = """
const ort = require(process.cwd() + '/node_modules/onnxruntime-node');
(async () => { for (const f of process.argv.slice(1)) {
  try { await ort.InferenceSession.create(f); console.log('loads  ' + f); }
  catch (e) { console.log('FAILS  ' + f + '\\n       ' + String(e.message).split('\\n')[0]); } } })();
"""
subprocess.run(["node", "-e", loader, *files], cwd=REPO, check=True)
print(f"converter: {tool.relative_to(REPO)}")
