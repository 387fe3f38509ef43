#!/usr/bin/env bash
# Puts the diffusers v0.31.0 sources (src/diffusers, plus tests/ whose dummy configs the corpus
# starts from) in .cache/diffusers-v0.31.0 (gitignored; fetched code is never committed).
#   scripts/corpus/get-diffusers.sh [BARE_GIT_DIR_OF_A_DIFFUSERS_MIRROR]
# Without an argument it clones the tag from GitHub (needs network).
set -euo pipefail
TAG=v0.31.0
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=$ROOT/.cache/diffusers-$TAG
MIRROR=${1:-}
if [[ -f $DEST/src/diffusers/__init__.py ]]; then
  echo "$DEST already there"
  exit 0
fi
rm -rf "$DEST.part"
mkdir -p "$DEST.part"
if [[ -n $MIRROR ]]; then
  git --git-dir="$MIRROR" archive "$TAG" src/diffusers tests setup.py | tar -x -C "$DEST.part"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  git clone --quiet --depth 1 --branch "$TAG" https://github.com/huggingface/diffusers "$tmp/diffusers"
  cp -r "$tmp/diffusers/src" "$tmp/diffusers/tests" "$tmp/diffusers/setup.py" "$DEST.part/"
fi
grep -q '__version__ = "0.31.0"' "$DEST.part/src/diffusers/__init__.py"
mv "$DEST.part" "$DEST"
echo "$DEST"
