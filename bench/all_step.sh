#!/bin/bash
# Seconds per ALL step of one network, for two (or more) gpu-sweep binaries measured in the
# same run, interleaved: for each binary, the run `--schedule D,U,Q,G,ALL*K` less the run
# `--schedule D,U,Q,G`, divided by the ALL steps the first took (a network may converge
# before K). Wall seconds and CPU seconds (user + system: page faults count) of the whole
# process, so start-up and the other stages cancel. Prints one row per binary and round, then
# the mean per binary.
# With FROM=J the first run is `--schedule D,U,Q,G,ALL*J` instead: the steps J+1..K alone,
# so that what a process pays once (the first touch of its scratch memory, OpenBLAS's
# buffers) cancels too, and the figure is the steady step of a long run.
#   [ARCH=gqu] [WIDTH=200] [K=10] [FROM=0] [ROUNDS=3] [POINTS=10000] [THREADS=1] bench/all_step.sh BIN...
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/all_step.sh BIN [BIN...]" >&2; exit 2; }
arch=${ARCH:-gqu}
width=${WIDTH:-200}
k=${K:-10}
rounds=${ROUNDS:-3}
from=${FROM:-0}
[ "$from" -lt "$k" ] || { echo "bench/all_step.sh: FROM ($from) must be below K ($k)" >&2; exit 2; }
base=D,U,Q,G
[ "$from" -eq 0 ] || base="D,U,Q,G,ALL*$from"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One run: prints "wall cpu newton_steps".
run() {
  local bin=$1 schedule=$2 out=$tmp/run
  /usr/bin/time -f '%e %U %S' -o "$tmp/time" "$bin" --arch "$arch" --widths "$width" \
    --points "${POINTS:-10000}" --threads "${THREADS:-1}" --device cpu --no-plots -q \
    --schedule "$schedule" --out "$out" --overwrite
  local steps
  steps=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "newton_steps") c = i } NR == 2 { print $c }' \
    "$out/results.csv")
  echo "$(awk '{ print $1, $2 + $3 }' "$tmp/time") $steps"
}
printf 'round\tbinary\tALL steps\twall s/step\tcpu s/step\n'
for ((r = 1; r <= rounds; ++r)); do
  for bin in "$@"; do
    read -r w0 u0 s0 < <(run "$bin" "$base")
    read -r w1 u1 s1 < <(run "$bin" "D,U,Q,G,ALL*$k")
    [ "$s1" -gt "$s0" ] || { echo "bench/all_step.sh: $bin took no ALL step past $base" >&2; exit 1; }
    awk -v r="$r" -v b="$bin" -v w0="$w0" -v u0="$u0" -v s0="$s0" -v w1="$w1" -v u1="$u1" -v s1="$s1" \
      'BEGIN { n = s1 - s0; printf "%d\t%s\t%d\t%.4f\t%.4f\n", r, b, n, (w1 - w0) / n, (u1 - u0) / n }' \
      | tee -a "$tmp/rows"
  done
done
awk -F'\t' '{ n[$2]++; w[$2] += $4; u[$2] += $5; if (!($2 in o)) o[$2] = NR }
  END { for (b in n) printf "mean\t%s\t-\t%.4f\t%.4f\n", b, w[b] / n[b], u[b] / n[b] }' "$tmp/rows"
