#!/usr/bin/env bash
# Measures retrieval quality in one command: sets up (idempotent), builds, assembles the
# Debian FAQ corpus (deploy/dev/corpus.sh --faq), ingests it into a fresh data directory as the
# knowledge base `faq`, and runs `zhiku eval` on deploy/eval/debian-faq.jsonl in every mode,
# with the off-topic questions of deploy/eval/off-topic.txt to check llm.min_relevance.
#
#   deploy/dev/eval.sh                 # the table (the README's "Retrieval quality")
#   deploy/dev/eval.sh --json          # extra arguments go to `zhiku eval`
#   deploy/dev/eval.sh answers         # answer quality per answer mode (the README's "Answer
#                                  # quality"); e.g. `answers --answer-mode extractive`
#
# The embedder is whatever the configuration says: ./zhiku.toml, the file named by
# ZHIKU_CONFIG, or ZHIKU_EMBEDDER__<KEY> variables over them, e.g.
#   ZHIKU_CONFIG=other-embedder.toml deploy/dev/eval.sh
#   ZHIKU_EMBEDDER__NAME=my-model ZHIKU_EMBEDDER__MODEL=my-model/model.onnx \
#     ZHIKU_EMBEDDER__TOKENIZER_DIR=my-model deploy/dev/eval.sh
# (model paths are relative to the models directory, ./models unless configured). The
# chunking follows the embedder's tokenizer, so every run ingests the corpus afresh.
#
# ZHIKU_EVAL_CORPUS sets the corpus directory (default /tmp/zhiku-eval). The data
# directory is a new temporary one, removed at exit, unless ZHIKU_EVAL_DATA names one to
# keep (it must not hold a `faq` knowledge base yet).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/zhiku/target}

bash deploy/setup.sh
# The same build as deploy/test.sh and deploy/run.sh, so they share one compile.
cargo build --locked --workspace --all-targets >&2
corpus=$(bash deploy/dev/corpus.sh --faq "${ZHIKU_EVAL_CORPUS:-/tmp/zhiku-eval}")
if [ -n "${ZHIKU_EVAL_DATA:-}" ]; then
  data=$ZHIKU_EVAL_DATA
  [ ! -e "$data/kbs/faq" ] || { echo "[eval] $data already holds a kb named faq" >&2; exit 1; }
else
  data=$(mktemp -d /tmp/zhiku-evaldata.XXXXXX)
  trap 'rm -rf "$data"' EXIT
fi
zhiku="$CARGO_TARGET_DIR/debug/zhiku"
# Only the report goes to stdout.
"$zhiku" --data "$data" ingest "$corpus" --kb faq >&2
if [ "${1:-}" = answers ]; then
  shift
  "$zhiku" --data "$data" eval answers --kb faq --queries deploy/eval/debian-faq.jsonl "$@"
else
  "$zhiku" --data "$data" eval --kb faq --queries deploy/eval/debian-faq.jsonl \
    --off-topic deploy/eval/off-topic.txt "$@"
fi
