#!/bin/sh
# Runs the independent Node gRPC client (client.js) against a numbering gRPC port.
#   run.sh BUILD_DIR ADDRESS PROTO FIRST SECOND TENANT_A TENANT_B
# @grpc/grpc-js and @grpc/proto-loader are installed from the npm registry into
# BUILD_DIR/grpc-node/node_modules (never into the source tree) when that is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$1
shift
dir="$build/grpc-node"
if [ ! -d "$dir/node_modules/@grpc/grpc-js" ] || [ ! -d "$dir/node_modules/@grpc/proto-loader" ]; then
	mkdir -p "$dir"
	cp "$here/package.json" "$dir/"
	[ -f "$here/package-lock.json" ] && cp "$here/package-lock.json" "$dir/"
	(cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
fi
NODE_PATH="$dir/node_modules" exec node "$here/client.js" "$@"
