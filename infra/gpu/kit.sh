#!/usr/bin/env bash
# Builds .whl/ in the project root: CPython 3.12 x86_64 wheels of the packages that the offline
# GPU host (Python 3.12 with its own torch) lacks, exactly at the versions of the lock file
# given (`make gpu-kit`: locks/requirements-gpu-py312.txt, hash-checked), 60-odd MB in all.
#
# Ray's wheel is repacked without its Java jar, JS source maps, RLlib and Ray LLM (unused), and
# with its three native binaries stripped of debug symbols, so that the kit and the working tree
# stay under the device tool's 64 MiB carry limit. Packages PyPI ships only as source
# (DeepSpeed, built without ops, and wtpsplit's small helpers) are built here into wheels; run
# it with the project's venv active (DeepSpeed's build imports torch).
#
# On the GPU host, from the project root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
lock=${1:-locks/requirements-gpu-py312.txt}
root=$(git rev-parse --show-toplevel); cd "$root"
python=${PYTHON:-.venv/bin/python}
ex=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$ex")"
grep -qx '/.whl/' "$ex" 2>/dev/null || echo '/.whl/' >> "$ex"
rm -rf .whl && mkdir -p .whl
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source_only="deepspeed|mosestokenizer|docopt|openfile|toolwrapper|uctools"
# One lock entry is its "name==version" line and the indented hash lines under it.
entries() { awk -v pick="$1" '/^[a-z0-9]/ {keep = ($0 ~ "^(" pick ")==")} keep' "$lock"; }
entries "[a-z0-9._-]+" | awk -v skip="^($source_only)==" '/^[a-z0-9]/ {keep = ($0 !~ skip)} keep' > "$tmp/binary.txt"
entries "$source_only" > "$tmp/source.txt"
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
"$python" -m pip download -q --no-deps --require-hashes $plat -d "$tmp/dl" -r "$tmp/binary.txt"
DS_BUILD_OPS=0 "$python" -m pip wheel -q --no-deps --require-hashes --no-build-isolation -w .whl -r "$tmp/source.txt"
( cd "$tmp/dl" && mkdir x && cd x && unzip -q ../ray-*.whl && rm -f ray/jars/ray_dist.jar \
  && rm -rf ray/rllib ray/llm \
  && strip --strip-unneeded ray/_raylet.so ray/core/src/ray/raylet/raylet ray/core/src/ray/gcs/gcs_server && find ray/dashboard/client/build -name '*.map' -delete \
  && sed -i '/ray\/jars\/ray_dist.jar,/d;/\.js\.map,/d;/^ray\/rllib\//d;/^ray\/llm\//d' ray-*.dist-info/RECORD \
  && zip -q -r -9 "$root/.whl/$(basename ../ray-*.whl)" . && cd .. && rm -rf x ray-*.whl )
mv "$tmp"/dl/*.whl .whl/
ls .whl
# The device tool carries the working tree and .whl/ together, at most 64 MiB.
kit=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "kit $((kit / 1048576)) MiB + working tree $((tree / 1048576)) MiB of the 64 MiB carry limit"
[ $((kit + tree)) -le $((64 * 1048576)) ] || { echo "over the carry limit" >&2; exit 1; }
