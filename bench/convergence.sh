#!/bin/bash
# Training RMSE against Newton steps of the ALL stage, for each arch at a few widths, by both
# ALL-stage methods from the same start: variable projection (--projection on) and the
# alternating method (--projection alternate). The run with ALL*k stops at step k, so one
# run per k gives the curve. Prints one table: method, arch, width, then the train RMSE after
# each k, the Newton steps used and the seconds of the longest run.
#   [WIDTHS=...] [STEPS=...] [POINTS=...] [ARCHS=...] [METHODS=...] bench/convergence.sh [gpu-sweep binary] [out dir]
# Defaults: ./build/gpu-sweep, runs/convergence, widths 10,50,100,200, k = 10,30,100,300,
# archs mlp,glu,gqu, methods "on alternate", invcos2 on 10^4 points.
set -euo pipefail
bin=${1:-./build/gpu-sweep}
out=${2:-runs/convergence}
widths=${WIDTHS:-10,50,100,200}
steps=${STEPS:-10,30,100,300}
IFS=, read -r -a ks <<< "$steps"
methods=${METHODS:-on alternate}
for method in $methods; do
  for k in "${ks[@]}"; do
    "$bin" --arch "${ARCHS:-mlp,glu,gqu}" --widths "$widths" --points "${POINTS:-10000}" --device cpu \
           --schedule "D,U,Q,G,ALL*$k" --projection "$method" --no-plots --overwrite -q \
           --out "$out/$method-$k"
  done
done
printf 'method\tarch\twidth'
for k in "${ks[@]}"; do printf '\tALL*%s' "$k"; done
printf '\tsteps\tseconds\n'
for method in $methods; do
  last="$out/$method-${ks[${#ks[@]}-1]}/results.csv"
  # One row per network of the last run, with the train RMSE of every run at that network.
  tail -n +2 "$last" | while IFS=, read -r arch _ _ width _ _ _ _ _ _ _ steps_used _ _ secs _; do
    printf '%s\t%s\t%s' "$method" "$arch" "$width"
    for k in "${ks[@]}"; do
      awk -F, -v a="$arch" -v w="$width" '$1 == a && $4 == w { printf "\t%.3e", $8 }' \
          "$out/$method-$k/results.csv"
    done
    printf '\t%s\t%s\n' "$steps_used" "$secs"
  done
done
