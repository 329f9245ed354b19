#!/usr/bin/env bash
# Sets up, builds and starts zhiku on the embedded default: data in ./data, models in
# ./models, listening on 127.0.0.1:8080. Extra arguments go to `zhiku serve`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/zhiku/target}

bash deploy/setup.sh
cargo build --locked --release -p zhiku-server --bin zhiku
exec "$CARGO_TARGET_DIR/release/zhiku" serve --data ./data --models ./models "$@"
