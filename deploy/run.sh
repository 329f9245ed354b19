#!/usr/bin/env bash
# Sets up, builds and starts zhiku on the embedded default: data in ./data, models in
# ./models, listening on 127.0.0.1:8080. Extra arguments go to `zhiku serve`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/zhiku/target}

bash deploy/setup.sh
# The same build as deploy/test.sh, so running and testing share one compile of llama.cpp
# and Qdrant Edge. Every dependency is optimised in it (see the workspace Cargo.toml); the
# hot paths (ONNX Runtime, llama.cpp, Tantivy, Qdrant) all live there.
cargo build --locked --workspace --all-targets
exec "$CARGO_TARGET_DIR/debug/zhiku" serve --data ./data --models ./models "$@"
