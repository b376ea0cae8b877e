// The index logic of the CUDA kernels, on the CPU: Hessian tile enumeration, ragged work
// lists, size groups for the batched Cholesky, and the per-parameter Jacobian entries the
// kernels compute one at a time.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "gpusweep/model/data.h"
#include "gpusweep/model/network.h"
#include "gpusweep/train/sweep.h"
#include "worklist.h"

namespace gs {
namespace {

TEST(WorkList, LowerTilesCoverTheLowerTriangleOnce) {
  for (int m : {1, 2, 63, 64, 65, 127, 128, 129, 641, 1401}) {
    const int t = tiles_per_side(m);
    EXPECT_EQ(t, (m + kHTile - 1) / kHTile);
    std::set<std::pair<int, int>> seen;
    for (int k = 0; k < lower_tiles(m); ++k) {
      int ti = -1, tj = -1;
      lower_tile_coords(k, &ti, &tj);
      ASSERT_GE(tj, 0);
      ASSERT_LE(tj, ti) << "m " << m << " k " << k;
      ASSERT_LT(ti, t);
      EXPECT_TRUE(seen.insert({ti, tj}).second) << "tile repeated: m " << m << " k " << k;
    }
    EXPECT_EQ(static_cast<int>(seen.size()), t * (t + 1) / 2);
  }
  // Far beyond any width, the square root must still land on the right row: row i holds
  // tiles i(i+1)/2 .. i(i+1)/2 + i.
  for (int row : {0, 1, 2, 99, 100, 999, 1999}) {
    const int first = row * (row + 1) / 2;
    for (int k : {first, first + row}) {
      int ti = -1, tj = -1;
      lower_tile_coords(k, &ti, &tj);
      EXPECT_EQ(ti, row) << "k " << k;
      EXPECT_EQ(tj, k - first) << "k " << k;
    }
  }
}

TEST(WorkList, FindSegmentWalksRaggedListsWithEmptySegments) {
  const std::vector<int> items = {3, 0, 1, 0, 0, 5, 2};
  const auto off = scan_offsets(items);
  ASSERT_EQ(off.back(), 11);
  std::vector<int> expect;
  for (std::size_t s = 0; s < items.size(); ++s)
    for (int q = 0; q < items[s]; ++q) expect.push_back(static_cast<int>(s));
  for (long long w = 0; w < off.back(); ++w)
    EXPECT_EQ(find_segment(off.data(), static_cast<int>(items.size()), w), expect[w]) << "w " << w;
  // Empty segments at both ends.
  const std::vector<int> ends = {0, 0, 2, 0, 1, 0};
  const auto eo = scan_offsets(ends);
  EXPECT_EQ(find_segment(eo.data(), 6, 0), 2);
  EXPECT_EQ(find_segment(eo.data(), 6, 1), 2);
  EXPECT_EQ(find_segment(eo.data(), 6, 2), 4);
  const std::vector<long long> one = {0, 7};
  EXPECT_EQ(find_segment(one.data(), 1, 0), 0);
  EXPECT_EQ(find_segment(one.data(), 1, 6), 0);
}

TEST(WorkList, GroupsBySizeInIncreasingOrder) {
  const auto g = group_by_size({161, 4, 161, 97, 4, 4});
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].first, 4);
  EXPECT_EQ(g[0].second, (std::vector<int>{1, 4, 5}));
  EXPECT_EQ(g[1].first, 97);
  EXPECT_EQ(g[1].second, (std::vector<int>{3}));
  EXPECT_EQ(g[2].first, 161);
  EXPECT_EQ(g[2].second, (std::vector<int>{0, 2}));
  EXPECT_TRUE(group_by_size({}).empty());
}

TEST(WorkList, ParamOwnerInvertsTheLayoutAndEntriesMatchTheJacobianRow) {
  Rng rng(7);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu, make_arch(Family::kGpoly, 2)}) {
    for (int d : {1, 3}) {
      for (int n : {1, 4, 9}) {
        const Shape s{a, Act::kSilu, d, n};
        const int p = num_params(s);
        std::vector<int> hits(p, 0);
        for (int i = 0; i < n; ++i)
          for (int k = 0; k < neuron_num_params(s); ++k) {
            const int q = neuron_param_index(s, i, k);
            int oi = -1, ok = -1;
            ASSERT_TRUE(param_owner(s, q, &oi, &ok));
            EXPECT_EQ(oi, i);
            EXPECT_EQ(ok, k);
            hits[q]++;
          }
        int oi, ok;
        EXPECT_FALSE(param_owner(s, p - 1, &oi, &ok));  // d0
        for (int q = 0; q < p - 1; ++q) EXPECT_EQ(hits[q], 1) << "param " << q;

        std::vector<double> th(p), x(d), row(p);
        for (auto& v : th) v = rng.normal();
        for (auto& v : x) v = 2.0 * rng.uniform() - 1.0;
        jacobian_row(s, th.data(), x.data(), row.data());
        for (int q = 0; q < p - 1; ++q) {
          ASSERT_TRUE(param_owner(s, q, &oi, &ok));
          const NeuronEval e = eval_neuron(s, th.data(), x.data(), oi);
          EXPECT_EQ(jacobian_entry(s, e, x.data(), ok), row[q]) << arch_name(a) << " d" << d << " q " << q;
          double mono[kMaxPolyTerms];
          poly_terms(s, x.data(), mono);
          EXPECT_EQ(jacobian_entry(s, e, x.data(), ok, mono), row[q]) << arch_name(a) << " d" << d << " q " << q;
        }
      }
    }
  }
}

}  // namespace
}  // namespace gs
