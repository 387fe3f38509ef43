#!/usr/bin/env bash
# Regenerates lib/onnx/gen/onnx_pb.ts from the vendored lib/onnx/proto/onnx.proto (onnx/onnx, Apache-2.0).
# Needs protoc (Debian: apt-get install protobuf-compiler) and the devDependency @bufbuild/protoc-gen-es.
# The generated file is committed; run this only when the vendored onnx.proto changes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=lib/onnx/gen
mkdir -p "$out"
protoc --plugin=protoc-gen-es=node_modules/.bin/protoc-gen-es \
  --es_out="$out" --es_opt=target=ts,import_extension=js \
  -I lib/onnx/proto lib/onnx/proto/onnx.proto
tmp=$(mktemp)
{
  echo "// GENERATED FILE, do not edit. Made by scripts/gen-onnx-proto.sh:"
  echo "//   protoc $(protoc --version | cut -d' ' -f2) + @bufbuild/protoc-gen-es $(node -p "require('@bufbuild/protoc-gen-es/package.json').version") (target=ts)"
  echo "//   from lib/onnx/proto/onnx.proto, vendored from onnx/onnx (onnx/onnx.proto, ONNX 1.23.0), Apache-2.0."
  cat "$out/onnx_pb.ts"
} > "$tmp"
mv "$tmp" "$out/onnx_pb.ts"
chmod 644 "$out/onnx_pb.ts"
