#!/usr/bin/env bash
# Runs the whole test suite on the real models: setup (idempotent), build, tests.
#
# The cargo target directory defaults to ~/.cache/zhiku/target, outside the clone, so CI
# and fresh clones on the same machine reuse compiled llama.cpp and Qdrant Edge.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/zhiku/target}
export ZHIKU_MODELS=${ZHIKU_MODELS:-$root/models}

ZHIKU_TEST_TOOLS=1 bash deploy/setup.sh
# A private PostgreSQL for the catalog's tests (installed from Debian if missing), in a
# temp dir on a free loopback port; stopped and removed however the run ends.
pg_dir=$(mktemp -d /tmp/zhiku-pg.XXXXXX)
trap 'deploy/postgres.sh stop "$pg_dir"' EXIT
ZHIKU_TEST_POSTGRES_URL=$(deploy/postgres.sh start "$pg_dir")
export ZHIKU_TEST_POSTGRES_URL
# One build of every target with the same feature set `cargo test` uses, so nothing (not
# Qdrant Edge, 10 minutes on 2 cores) is compiled twice; it also builds the binary the
# end-to-end tests start.
cargo build --locked --workspace --all-targets
# Each parser is fuzzed for 30 s (ingest/parse/fuzz), from a fixed seed.
export ZHIKU_FUZZ_SECS=${ZHIKU_FUZZ_SECS:-30}
# Two test threads: each e2e test starts a server that loads the models.
cargo test --locked --workspace -- --test-threads 2
# The end-to-end tests of what the PostgreSQL catalog holds (documents and versions, jobs,
# conversations and ratings, API keys), again with the catalog there: one database per
# test's data directory (README, Scaling out).
# `--workspace` with the targets named, not `-p`: the features stay those of the build
# above, so nothing (not Qdrant Edge) is compiled again.
ZHIKU_CATALOG__BACKEND=postgres cargo test --locked --workspace \
    --test documents --test jobs --test conversations --test auth -- --test-threads 2
# The Qdrant backend's tests need a Qdrant server; without ZHIKU_TEST_QDRANT_URL they are
# reported as ignored (with that reason) by the run above.
if [ -n "${ZHIKU_TEST_QDRANT_URL:-}" ]; then
    cargo test --locked --workspace --lib qdrant -- --ignored --test-threads 1
    # API and worker processes over the private PostgreSQL and that Qdrant.
    cargo test --locked --workspace --test scale_out -- --ignored
fi
