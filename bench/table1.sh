#!/bin/bash
# The synthetic rows of the paper's Table 1: slopes of test RMSE against width for mlp and
# glu on sin(4x) sin(4y) (d = 2) and the three Friedman problems (d = 5, 4, 4).
#   [WIDTHS=...] [SEEDS=...] [POINTS=...] bench/table1.sh [gpu-sweep binary] [out dir] [more options...]
# Defaults: ./build/gpu-sweep, runs/table1, widths 4,6,8,11,16,23,32, 4 seeds, 10^4 points.
set -euo pipefail
bin=${1:-./build/gpu-sweep}
out=${2:-runs/table1}
shift $(( $# > 2 ? 2 : $# ))
widths=${WIDTHS:-4,6,8,11,16,23,32}
for t in sin_sin friedman1 friedman2 friedman3; do
  "$bin" --target "$t" --arch mlp,glu --widths "$widths" --seeds "${SEEDS:-4}" --points "${POINTS:-10000}" \
         --no-plots --overwrite --out "$out/$t" -q "$@"
  "$bin" fit "$out/$t" | grep -E '^(arch|mlp|glu) '
done
