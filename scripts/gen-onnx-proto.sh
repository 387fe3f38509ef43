#!/usr/bin/env bash
# Regenerates lib/onnx/gen/onnx_pb.ts from the vendored lib/onnx/proto/onnx.proto (onnx/onnx, Apache-2.0).
# Needs protoc (Debian: apt-get install protobuf-compiler) and the npm registry: the code generator,
# @bufbuild/protoc-gen-es, is fetched into a temporary folder at the version of the installed
# @bufbuild/protobuf runtime (they must match). It is not a devDependency because it declares
# node >= 22, and every `npm install` of the project on Node 20 warned EBADENGINE for a tool that
# runs only here; it runs fine on Node 20.
# The generated file is committed; run this only when the vendored onnx.proto changes.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -p "JSON.parse(require('fs').readFileSync('node_modules/@bufbuild/protobuf/package.json', 'utf8')).version")
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
npm install --prefix "$tool" --no-save --no-audit --no-fund --engine-strict=false --loglevel=error \
  "@bufbuild/protoc-gen-es@$version"
out=lib/onnx/gen
mkdir -p "$out"
generated=$(mktemp -d "$tool/out.XXXX")
protoc --plugin=protoc-gen-es="$tool/node_modules/.bin/protoc-gen-es" \
  --es_out="$generated" --es_opt=target=ts,import_extension=js \
  -I lib/onnx/proto lib/onnx/proto/onnx.proto
tmp=$(mktemp "$out/.onnx_pb.ts.XXXX")
{
  echo "// GENERATED FILE, do not edit. Made by scripts/gen-onnx-proto.sh:"
  echo "//   protoc $(protoc --version | cut -d' ' -f2) + @bufbuild/protoc-gen-es $version (target=ts)"
  echo "//   from lib/onnx/proto/onnx.proto, vendored from onnx/onnx (onnx/onnx.proto, ONNX 1.23.0), Apache-2.0."
  cat "$generated/onnx_pb.ts"
} > "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out/onnx_pb.ts"
