// The CUDA backend's host-side planning on the CPU: padded matrix offsets, the work lists'
// offsets, the segmented sums' boundaries, the Cholesky path table, the rounds through the
// scratch buffer, and the memory sizing. Plain arithmetic: runs in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <vector>

#include "cuda_plan.h"
#include "gpusweep/model/data.h"
#include "gpusweep/train/sweep.h"
#include "worklist.h"

namespace gs {
namespace {

TEST(CudaPlan, MatrixOffsetsAreAlignedAndDisjoint) {
  const std::vector<int> sizes = {1, 3, 4, 1401, 7, 16, 1001, 2, 65};
  const auto off = matrix_offsets(sizes);
  ASSERT_EQ(off.size(), sizes.size() + 1);
  EXPECT_EQ(off[0], 0);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const long long sq = static_cast<long long>(sizes[i]) * sizes[i];
    EXPECT_EQ(off[i] % kMatrixAlign, 0) << "matrix " << i << " (m = " << sizes[i] << ")";
    EXPECT_GE(off[i + 1] - off[i], sq) << "matrix " << i << " overlaps the next";
    EXPECT_LT(off[i + 1] - off[i], sq + kMatrixAlign) << "matrix " << i << " padded by a whole slot";
  }
  EXPECT_EQ(padded_square(1401), 1962816);  // 1401^2 = 1962801, odd, rounded up to 32
  EXPECT_EQ(padded_square(16), 256);
  EXPECT_EQ(padded_square(1), 32);
}

// The kernels' count_work_kernel, written again: the host offsets must give the same lists.
long long reference_items(WorkItems kind, const CallShape& c) {
  switch (kind) {
    case WorkItems::kPointTiles: return (c.points + 255) / 256;
    case WorkItems::kParamTiles: return (c.m + 127) / 128;
    case WorkItems::kHessianTiles: {
      const long long t = (c.m + 63) / 64;
      return t * (t + 1) / 2;
    }
    case WorkItems::kNeurons: return c.neurons;
    case WorkItems::kNeuronsAndBias: return c.neurons + 1;
  }
  return -1;
}

TEST(CudaPlan, WorkOffsetsScanEveryKindAndMapBack) {
  const std::vector<CallShape> calls = {{1, 0, 1}, {15, 2, 256}, {1401, 200, 10000}, {64, 9, 257},
                                        {65, 9, 0}, {128, 18, 2000}, {129, 18, 3}};
  for (WorkItems kind : {WorkItems::kPointTiles, WorkItems::kParamTiles, WorkItems::kHessianTiles,
                         WorkItems::kNeurons, WorkItems::kNeuronsAndBias}) {
    const auto off = work_offsets(calls, kind);
    ASSERT_EQ(off.size(), calls.size() + 1);
    std::vector<int> items;
    for (const auto& c : calls) {
      EXPECT_EQ(work_items(kind, c), reference_items(kind, c)) << "kind " << static_cast<int>(kind) << " m " << c.m;
      items.push_back(static_cast<int>(reference_items(kind, c)));
    }
    EXPECT_EQ(off, scan_offsets(items));
    // Every work item finds its call, empty calls included.
    for (int j = 0; j < static_cast<int>(calls.size()); ++j)
      for (long long w = off[j]; w < off[j + 1]; ++w) ASSERT_EQ(find_segment(off.data(), static_cast<int>(calls.size()), w), j);
  }
  EXPECT_EQ(work_items(WorkItems::kHessianTiles, {1401, 200, 0}), 22 * 23 / 2);
  EXPECT_EQ(work_items(WorkItems::kPointTiles, {1, 1, 10000}), 40);
}

// The trial losses lay their partial sums out [t][w]; segment t * count + j must hold
// exactly call j's items of trial t.
TEST(CudaPlan, SegmentOffsetsCoverTheRepeatedWorkList) {
  const std::vector<long long> off = {0, 3, 3, 7, 8};  // call 1 has no items
  const int count = 4;
  for (int n_alpha : {1, 2, 8}) {
    const auto seg = segment_offsets(off, n_alpha);
    ASSERT_EQ(seg.size(), static_cast<std::size_t>(count * n_alpha + 1));
    EXPECT_EQ(seg.front(), 0);
    EXPECT_EQ(seg.back(), n_alpha * off.back());
    for (int t = 0; t < n_alpha; ++t)
      for (int j = 0; j < count; ++j) {
        EXPECT_EQ(seg[t * count + j], t * off.back() + off[j]);
        EXPECT_EQ(seg[t * count + j + 1] - seg[t * count + j], off[j + 1] - off[j]) << "t " << t << " j " << j;
      }
  }
  EXPECT_EQ(segment_offsets(off, 1), off);
}

TEST(CudaPlan, CholeskyTableParsesAndChooses) {
  EXPECT_EQ(cholesky_text(parse_cholesky("auto")), kDefaultCholesky);
  EXPECT_EQ(cholesky_text(parse_cholesky("batched")), "1:0");
  EXPECT_EQ(cholesky_text(parse_cholesky("looped")), "1:never");
  for (const char* t : {"1:0", "1:never", "1:0,256:128,768:never", "1:4,32:0,1000:17"})
    EXPECT_EQ(cholesky_text(parse_cholesky(t)), t);
  const CholeskyTable table = parse_cholesky("1:0,256:128,768:never");
  EXPECT_EQ(choose_cholesky(table, 1, 1), CholeskyPath::kBatched);
  EXPECT_EQ(choose_cholesky(table, 255, 1), CholeskyPath::kBatched);
  EXPECT_EQ(choose_cholesky(table, 256, 127), CholeskyPath::kLooped);
  EXPECT_EQ(choose_cholesky(table, 256, 128), CholeskyPath::kBatched);
  EXPECT_EQ(choose_cholesky(table, 767, 4096), CholeskyPath::kBatched);
  EXPECT_EQ(choose_cholesky(table, 768, 1 << 20), CholeskyPath::kLooped);
  EXPECT_EQ(choose_cholesky(table, 1401, 96), CholeskyPath::kLooped);
  EXPECT_EQ(choose_cholesky(parse_cholesky("batched"), 1401, 1), CholeskyPath::kBatched);
  EXPECT_EQ(choose_cholesky(parse_cholesky("looped"), 1, 100000), CholeskyPath::kLooped);
  for (const char* bad : {"", "fast", "2:0", "1:0,1:5", "1:0,300:5,200:1", "1:x", "1:", ":3", "1:0,,5:3",
                          "1:-1", "1:0,300:99999999999", "1 :0"}) {
    try {
      parse_cholesky(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--cholesky: ", 0), 0u) << e.what();
    }
  }
}

// Every call appears once; entries run by size; each round fits the scratch, its matrices
// aligned and disjoint; a group's path comes from its whole batch even when it spans rounds.
void check_plan(const FactorPlan& plan, const std::vector<int>& sizes, const std::vector<long long>& src,
                long long scratch, const CholeskyTable& table) {
  ASSERT_EQ(plan.entries.size(), sizes.size());
  std::set<int> seen;
  for (std::size_t q = 0; q < plan.entries.size(); ++q) {
    const FactorEntry& e = plan.entries[q];
    EXPECT_TRUE(seen.insert(e.call).second) << "call " << e.call << " twice";
    EXPECT_EQ(e.m, sizes[e.call]);
    EXPECT_EQ(e.src, src[e.call]);
    EXPECT_EQ(e.dst % kMatrixAlign, 0);
    if (q > 0) {
      EXPECT_LE(plan.entries[q - 1].m, e.m) << "entries out of size order";
      if (plan.entries[q - 1].m == e.m) EXPECT_LT(plan.entries[q - 1].call, e.call);
    }
  }
  int next = 0, looped_max = 0;
  for (const FactorRound& r : plan.rounds) {
    EXPECT_EQ(r.begin, next);
    EXPECT_LT(r.begin, r.end);
    EXPECT_LE(r.doubles, scratch);
    long long end = 0;
    int g_next = r.begin;
    for (const FactorGroup& g : r.groups) {
      EXPECT_EQ(g.begin, g_next);
      int batch = 0;
      for (int m : sizes) batch += m == g.m;
      EXPECT_EQ(g.path, choose_cholesky(table, g.m, batch)) << "m " << g.m;
      if (g.path == CholeskyPath::kLooped) looped_max = std::max(looped_max, g.m);
      for (int q = g.begin; q < g.end; ++q) {
        const FactorEntry& e = plan.entries[q];
        EXPECT_EQ(e.m, g.m);
        EXPECT_EQ(e.dst, end) << "entry " << q << " not packed";
        end = e.dst + padded_square(e.m);
      }
      g_next = g.end;
    }
    EXPECT_EQ(g_next, r.end);
    EXPECT_EQ(end, r.doubles);
    next = r.end;
  }
  EXPECT_EQ(next, static_cast<int>(sizes.size()));
  EXPECT_EQ(plan.looped_max, looped_max);
}

TEST(CudaPlan, FactorizationRoundsFitTheScratch) {
  // Interleaved sizes, as a mixed batch lists them: three 300s, two 15s, four 1401s, one 7.
  const std::vector<int> sizes = {300, 15, 1401, 300, 1401, 7, 15, 1401, 300, 1401};
  const auto src = matrix_offsets(sizes);
  const std::vector<long long> h_src(src.begin(), src.end() - 1);
  const CholeskyTable table = parse_cholesky("1:0,256:3,768:never");
  // Everything in one round.
  const FactorPlan one = plan_factorization(sizes, h_src, src.back(), table);
  check_plan(one, sizes, h_src, src.back(), table);
  EXPECT_EQ(one.rounds.size(), 1u);
  EXPECT_EQ(one.rounds[0].groups.size(), 4u);
  EXPECT_EQ(one.looped_max, 1401);
  // Room for two of the largest: the 1401s split over two rounds, each group whole or split
  // in order, the path of the 300s (a batch of 3: batched) kept.
  const long long two = 2 * padded_square(1401);
  const FactorPlan split = plan_factorization(sizes, h_src, two, table);
  check_plan(split, sizes, h_src, two, table);
  EXPECT_EQ(split.rounds.size(), 3u);
  for (const auto& r : split.rounds)
    for (const auto& g : r.groups)
      if (g.m == 300) EXPECT_EQ(g.path, CholeskyPath::kBatched);
  // The smallest scratch that holds the largest matrix: one 1401 per round.
  const FactorPlan tight = plan_factorization(sizes, h_src, padded_square(1401), table);
  check_plan(tight, sizes, h_src, padded_square(1401), table);
  EXPECT_GE(tight.rounds.size(), 5u);
  // A scratch below the largest matrix is a planning bug.
  EXPECT_THROW(plan_factorization(sizes, h_src, padded_square(1401) - 1, table), std::logic_error);
  EXPECT_TRUE(plan_factorization({}, {}, 100, table).rounds.empty());
}

TEST(CudaPlan, MemoryPlanSetsAsideScratchAndWorkspace) {
  const std::size_t gib = std::size_t(1) << 30;
  const CudaMemory small = cuda_memory_plan(gib, 0.85, 0, 0);
  EXPECT_EQ(small.scratch, kScratchMin);
  const std::size_t usable = static_cast<std::size_t>(0.85 * gib) - kCudaReserve;
  EXPECT_EQ(small.networks, usable - kScratchMin);
  const CudaMemory mid = cuda_memory_plan(4 * gib, 0.85, 0, 0);  // an eighth of the usable memory
  EXPECT_EQ(mid.scratch, (static_cast<std::size_t>(0.85 * 4 * gib) - kCudaReserve) / 8);
  const CudaMemory big = cuda_memory_plan(140 * gib, 0.85, 0, std::size_t(80) << 20);
  EXPECT_EQ(big.scratch, kScratchMax);
  EXPECT_EQ(big.workspace, std::size_t(80) << 20);
  EXPECT_EQ(big.networks + big.scratch + big.workspace + kCudaReserve, static_cast<std::size_t>(0.85 * 140 * gib));
  const CudaMemory asked = cuda_memory_plan(16 * gib, 0.85, std::size_t(100) << 20, 0);
  EXPECT_EQ(asked.scratch, std::size_t(100) << 20);
  EXPECT_EQ(cuda_memory_plan(std::size_t(100) << 20, 0.85, 0, 0).networks, 0u);
  // One network holds one padded Hessian (no damped copy beside it) and its vectors.
  const std::size_t p1401 = cuda_bytes_per_network(1401, 20000, kScratchMin);
  EXPECT_GE(p1401, 8 * static_cast<std::size_t>(padded_square(1401)));
  EXPECT_LT(p1401, std::size_t(17) << 20);
  // A Hessian larger than the scratch also pays for its damped copy's excess.
  const std::size_t tiny = 8 * static_cast<std::size_t>(padded_square(100));
  EXPECT_EQ(cuda_bytes_per_network(1401, 20000, tiny) - p1401, 8 * static_cast<std::size_t>(padded_square(1401) - padded_square(100)));
}

// Chunks planned from a card's free memory hold every network of the full sweep, on a small
// card and on an 80 GB one, and never exceed the budget. With one Hessian per network the
// 80 GB card holds the whole sweep at once; the backend's chunk cap then splits it.
TEST(CudaPlan, FullSweepFitsSmallAndLargeCards) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 10000, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu};
  for (int w = 1; w <= 200; ++w) spec.widths.push_back(w);
  spec.seeds = 32;
  const auto jobs = make_jobs(spec);
  ASSERT_EQ(jobs.size(), 19200u);
  const int pts = max_points(spec.datasets);
  for (double gib : {4.0, 79.0}) {
    const CudaMemory mem = cuda_memory_plan(static_cast<std::size_t>(gib * 1073741824.0), 0.85, 0, 0);
    const auto bytes = [&](int p) { return cuda_bytes_per_network(p, pts, mem.scratch); };
    for (int cap : {0, 4096}) {
      const auto chunks = plan_chunks(jobs, {1}, mem.networks, bytes, cap);
      std::size_t total = 0;
      for (const auto& c : chunks) {
        std::size_t need = 0;
        for (int j : c) need += bytes(job_params(jobs[j], {1}));
        EXPECT_LE(need, mem.networks);
        if (cap > 0) EXPECT_LE(static_cast<int>(c.size()), cap);
        total += c.size();
      }
      EXPECT_EQ(total, jobs.size());
      if (gib > 70 && cap == 0) EXPECT_EQ(chunks.size(), 1u);
      if (gib > 70 && cap > 0) EXPECT_EQ(chunks.size(), 5u);
      std::printf("%.0f GiB card, cap %d: %zu chunks\n", gib, cap, chunks.size());
    }
  }
}

}  // namespace
}  // namespace gs
