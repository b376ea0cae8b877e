#!/bin/bash
# The spline ladder: for each order K of gated:K (mlp, glu, gqu, gated:3, gated:4) and each
# target, the slope of test RMSE and the RMSE at one width of
#   - the construction (gated:K-construct: the least-squares C^K spline of degree K + 1 as a
#     network),
#   - training from MASO (the default start; SEEDS seeds),
#   - training from --init spline (one seed: the start does not depend on it),
#   - Adam from MASO (--optimizer adam, ADAM_STEPS steps at ADAM_LR; one seed, the widths
#     ADAM_WIDTHS: each step is a pass over the points, and thousands are needed),
#   - gpoly:K trained from MASO (the gate times a free polynomial of degree K; SEEDS seeds).
# METHODS (comma-separated, default all: construct,maso,spline,adam,gpoly) picks the runs and
# the rows; the construction comes with the maso run.
# Prints one tab-separated table: target, K, method, slope against n, against P and against
# the effective P (median over seeds of each seed's fit), the median test RMSE at width AT,
# and how many networks stopped at the step limit.
#   [WIDTHS=...] [SEEDS=...] [AT=...] [SCHEDULE=...] [ADAM_WIDTHS=...] [ADAM_STEPS=...]
#   [ADAM_LR=...] [METHODS=...] bench/ladder.sh [gpu-sweep binary] [out dir]
# Defaults: ./build/gpu-sweep, runs/ladder, widths 8,12,16,24,32,48,64,100,140,200, 4 seeds,
# AT = 100, the default schedule; Adam on widths 8,16,32,64,100 for 10000 steps at 1e-3;
# sin4 on 4000 points and invcos2 on 10^4.
set -euo pipefail
bin=${1:-./build/gpu-sweep}
out=${2:-runs/ladder}
widths=${WIDTHS:-8,12,16,24,32,48,64,100,140,200}
seeds=${SEEDS:-4}
at=${AT:-100}
schedule=${SCHEDULE:-D,U,Q,R,S,G,ALL*100}
archs=mlp,glu,gqu,gated:3,gated:4
gpolys=gpoly:0,gpoly:1,gpoly:2,gpoly:3,gpoly:4
methods=,${METHODS:-construct,maso,spline,adam,gpoly},
want() { [[ $methods == *",$1,"* ]]; }
adam_widths=${ADAM_WIDTHS:-8,16,32,64,100}
constructs=mlp-construct,glu-construct,gqu-construct,gated:3-construct,gated:4-construct

run() {  # target points name widths extra-options...
  local target=$1 points=$2 name=$3 w=$4
  shift 4
  "$bin" --target "$target" --points "$points" --widths "$w" --schedule "$schedule" \
         --device cpu --no-plots --overwrite -q --out "$out/$target-$name" "$@"
}

# The table of one run: arch, slope(n), slope(P), slope(P_eff) from `gpu-sweep fit`.
slopes() {
  # With more than one seed each slope is followed by its interval "[lo, hi]": skip those.
  "$bin" fit "$1" | awk '$2 == "relu" { n = 0; for (i = 1; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) t[++n] = $i;
                                        print t[1], t[4], t[5], t[6] }'
}

# Median test RMSE of arch at width $at, and the networks at the step limit.
at_width() {  # dir arch
  awk -F, -v a="$2" -v w="$at" 'NR > 1 && $1 == a && $4 == w { print $9 }' "$1/results.csv" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf "%.3e\n", v[(NR + 1) / 2];
                                        else printf "%.3e\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
stopped() {
  awk -F, -v a="$2" 'NR > 1 && $1 == a && $10 == "max_steps" { k++ } END { print k + 0 }' "$1/results.csv"
}

printf 'target\tK\tmethod\tslope(n)\tslope(P)\tslope(P_eff)\tRMSE(n=%s)\tat step limit\n' "$at"
for spec in sin4:4000 invcos2:10000; do
  target=${spec%%:*}
  points=${spec##*:}
  if want maso || want construct; then
    run "$target" "$points" maso "$widths" --arch "$archs,$constructs" --seeds "$seeds" --init maso
  fi
  if want spline; then run "$target" "$points" spline "$widths" --arch "$archs" --init spline; fi
  if want adam; then
    run "$target" "$points" adam "$adam_widths" --arch "$archs" --init maso --optimizer adam \
        --adam-steps "${ADAM_STEPS:-10000}" --adam-lr "${ADAM_LR:-1e-3}"
  fi
  if want gpoly; then run "$target" "$points" gpoly "$widths" --arch "$gpolys" --seeds "$seeds" --init maso; fi
  for K in 0 1 2 3 4; do
    name=$(cut -d, -f$((K + 1)) <<< "$archs")
    for m in construct maso spline adam gpoly; do
      want "$m" || continue
      case $m in
        construct) dir="$out/$target-maso"; arch="$name-construct" ;;
        maso) dir="$out/$target-maso"; arch=$name ;;
        spline) dir="$out/$target-spline"; arch=$name ;;
        adam) dir="$out/$target-adam"; arch=$name ;;
        gpoly) dir="$out/$target-gpoly"; arch=gpoly:$K ;;
      esac
      read -r _ sn sp se < <(slopes "$dir" | awk -v a="$arch" '$1 == a') || true
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$K" "$m" "${sn:--}" "${sp:--}" "${se:--}" \
             "$(at_width "$dir" "$arch")" "$(stopped "$dir" "$arch")"
    done
  done
done
