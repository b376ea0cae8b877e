// Index logic of the CUDA backend's work lists, as plain functions (host and device) so the
// CPU tests cover everything but the arithmetic. A work list is a ragged set of (network,
// item) pairs: items per network are scanned into offsets, and work index w finds its network
// by binary search.
#pragma once

#include <algorithm>
#include <map>
#include <vector>

#include "gpusweep/model/hd.h"

namespace gs {

constexpr int kHTile = 64;       // edge of a Hessian output tile (64 x 64 entries per block)
constexpr int kPointTile = 256;  // points per block of the loss and residual kernels
constexpr int kParamTile = 128;  // parameters per block of the gradient kernel

HD inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
HD inline int tiles_per_side(int m) { return ceil_div(m, kHTile); }
// Tiles covering the lower triangle (diagonal included) of an m x m matrix.
HD inline int lower_tiles(int m) {
  const int t = tiles_per_side(m);
  return t * (t + 1) / 2;
}
// Tile k of the lower triangle, in row order: (0,0), (1,0), (1,1), (2,0), ...
HD inline void lower_tile_coords(int k, int* ti, int* tj) {
  int i = static_cast<int>((::sqrt(8.0 * k + 1.0) - 1.0) / 2.0);
  while (i * (i + 1) / 2 > k) --i;
  while ((i + 1) * (i + 2) / 2 <= k) ++i;
  *ti = i;
  *tj = k - i * (i + 1) / 2;
}

// offsets has count + 1 entries, offsets[0] = 0, non-decreasing, offsets[count] = total.
// Returns the segment s with offsets[s] <= w < offsets[s + 1] (segments may be empty).
HD inline int find_segment(const long long* offsets, int count, long long w) {
  int lo = 0, hi = count;  // invariant: offsets[lo] <= w < offsets[hi]
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= w) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Host reference of the scanned work list: offsets of items per segment (exclusive scan).
inline std::vector<long long> scan_offsets(const std::vector<int>& items) {
  std::vector<long long> off(items.size() + 1, 0);
  for (std::size_t i = 0; i < items.size(); ++i) off[i + 1] = off[i] + items[i];
  return off;
}

// Positions (into sizes) grouped by equal size, groups in increasing size, positions in
// increasing order: cuSOLVER's batched Cholesky takes one matrix size per call.
inline std::vector<std::pair<int, std::vector<int>>> group_by_size(const std::vector<int>& sizes) {
  std::map<int, std::vector<int>> g;
  for (std::size_t i = 0; i < sizes.size(); ++i) g[sizes[i]].push_back(static_cast<int>(i));
  return {g.begin(), g.end()};
}

}  // namespace gs
