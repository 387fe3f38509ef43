#!/usr/bin/env bash
# Puts the two converters the derived corpus formats run (fetched code, never committed) in .cache/:
#  - microsoft/onnxruntime's python tools: the transformer optimizer (fuses attention into
#    com.microsoft Attention / MultiHeadAttention; model_type "unet" and "mmdit") and its float16.py
#    (its fork of onnxconverter-common's converter, used for the fp16 files)
#  - microsoft/onnxconverter-common's float16.py (only for probe_occ_fp16.py: its output does not
#    load in onnxruntime, see models/corpus/README.md)
#   scripts/corpus/get-tools.sh [ORT_BARE_GIT_DIR] [ONNXCONVERTER_COMMON_BARE_GIT_DIR]
# Without arguments it fetches the pinned commits from GitHub (needs network). With a partial
# mirror, git archive may warn "invalid object" for blobs outside the extracted paths; harmless.
set -euo pipefail
ORT_SHA=735e69a396afe7e1bdfbc6b38c1d43eeb68b8484   # onnxruntime main, 2026-02-13 (VERSION_NUMBER 1.25.0)
OCC_SHA=28b00d4c0617ae181b06dfe16272fca44988fe5c   # onnxconverter-common, "Update version number to 1.17"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ORT_DEST=$ROOT/.cache/onnxruntime-transformers-${ORT_SHA:0:12}
OCC_DEST=$ROOT/.cache/onnxconverter-common-${OCC_SHA:0:12}

extract() { # git_dir sha path dest
  rm -rf "$4.part"
  mkdir -p "$4.part"
  git --git-dir="$1" archive "$2" "$3" | tar -x -C "$4.part"
  mv "$4.part" "$4"
}

fetch_sha() { # url sha -> bare git dir on stdout
  local d
  d=$(mktemp -d)
  git init --quiet --bare "$d"
  git --git-dir="$d" fetch --quiet --depth 1 "$1" "$2"
  echo "$d"
}

if [[ ! -d $ORT_DEST ]]; then
  g=${1:-}
  [[ -n $g ]] || g=$(fetch_sha https://github.com/microsoft/onnxruntime "$ORT_SHA")
  extract "$g" "$ORT_SHA" onnxruntime/python/tools "$ORT_DEST"
fi
if [[ ! -d $OCC_DEST ]]; then
  g=${2:-}
  [[ -n $g ]] || g=$(fetch_sha https://github.com/microsoft/onnxconverter-common "$OCC_SHA")
  extract "$g" "$OCC_SHA" onnxconverter_common "$OCC_DEST"
fi
echo "$ORT_DEST"
echo "$OCC_DEST"
