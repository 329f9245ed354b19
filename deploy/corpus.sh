#!/usr/bin/env bash
# Assembles the benchmark corpus from Debian packages: chapters 1-4 of the Debian Reference
# in English and Chinese (HTML) and the Debian Edu manual in Chinese (PDF).
#
#   deploy/corpus.sh [DIR]     (default /tmp/zhiku-corpus)
set -euo pipefail
dir=${1:-/tmp/zhiku-corpus}
packages=(debian-reference-en debian-reference-zh-cn debian-edu-doc-zh-cn)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$dir"
cp /usr/share/debian-reference/ch0{1,2,3,4}.{en,zh-cn}.html "$dir/"
cp /usr/share/doc/debian-edu-doc-zh-cn/debian-edu-bookworm-manual.pdf "$dir/"
du -sh "$dir" >&2
echo "$dir"
