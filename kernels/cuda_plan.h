// The CUDA backend's host-side planning, in plain C++ so that the CPU tests cover it: the
// padded layout of the matrices, the work lists' offsets, the Cholesky path of each size
// group, the rounds of damped matrices through the scratch buffer, and the memory sizing.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace gs {

// Every matrix starts on a multiple of this many doubles (256 bytes: cudaMalloc's alignment),
// whatever the sizes before it.
constexpr long long kMatrixAlign = 32;

// Doubles an m x m matrix takes in a padded array: m^2 rounded up to kMatrixAlign.
long long padded_square(int m);

// Offsets of consecutive m x m matrices, sizes[i] each, every one padded: count + 1 entries,
// the last the total.
std::vector<long long> matrix_offsets(const std::vector<int>& sizes);

// The items of one call in each of the kernels' work lists (the order of WorkKind in
// batch_kernels.h): point tiles of its dataset, tiles of kParamTile stage parameters, lower
// 64 x 64 tiles of its stage Hessian, its neurons, its neurons and d0.
enum class WorkItems : int { kPointTiles, kParamTiles, kHessianTiles, kNeurons, kNeuronsAndBias };
struct CallShape {
  int m;        // stage parameters
  int neurons;  // width n
  int points;   // points of the dataset the work list walks
};
long long work_items(WorkItems kind, const CallShape& c);

// The work list of a call list: exclusive scan of its items, count + 1 entries.
std::vector<long long> work_offsets(const std::vector<CallShape>& calls, WorkItems kind);

// Boundaries of the segmented sums over a work list repeated n_alpha times ([t][w] layout,
// work = off.back() items each): segment t * count + j is call j's items of repetition t.
// count * n_alpha + 1 entries; segment s is [result[s], result[s + 1]).
std::vector<long long> segment_offsets(const std::vector<long long>& off, int n_alpha);

// Which cuSOLVER routine factorizes a size group: cusolverDnDpotrfBatched on the whole group
// in one call, or one cusolverDnXpotrf per matrix spread over many streams.
enum class CholeskyPath { kBatched, kLooped };

// Sizes from min_size up to the next rule's: batched when the group holds at least min_batch
// matrices, looped otherwise (min_batch 0: always batched; kNeverBatched: always looped).
struct CholeskyRule {
  int min_size;
  int min_batch;
};
constexpr int kNeverBatched = 1 << 30;

// Rules by increasing min_size, the first one from size 1.
struct CholeskyTable {
  std::vector<CholeskyRule> rules;
};

// The table used when --cholesky is auto. Its crossovers are a prior until bench_gpu
// measures them on a card (its "Cholesky paths" table prints the line to put here).
extern const char* const kDefaultCholesky;

// "auto" (kDefaultCholesky), "batched", "looped", or rules "S:B,S:B,..." with S the smallest
// size of the rule (the first S is 1, then increasing) and B the batch from which the batched
// call is taken, or "never". Throws std::invalid_argument naming --cholesky.
CholeskyTable parse_cholesky(const std::string& text);
// The rules as parse_cholesky reads them.
std::string cholesky_text(const CholeskyTable& table);
CholeskyPath choose_cholesky(const CholeskyTable& table, int m, int batch);

// One solve's factorizations, in rounds through a scratch buffer of scratch_doubles: each
// round gathers its matrices' H into the scratch, damps them there, and factorizes them.
// Entries run by increasing size (positions in increasing order within a size); a round is a
// run of entries whose padded squares fit the scratch together, so a size group may span
// rounds. Each size group's path is chosen once, from its whole batch.
struct FactorEntry {
  int call;       // position in the solve's call list
  int m;          // matrix size
  long long src;  // offset of its H (m x m) in the padded H array
  long long dst;  // offset of its damped copy in the scratch
};
struct FactorGroup {
  int m;
  CholeskyPath path;
  int begin, end;  // entries
};
struct FactorRound {
  int begin, end;     // entries
  long long doubles;  // scratch it uses, padding included
  std::vector<FactorGroup> groups;
};
struct FactorPlan {
  std::vector<FactorEntry> entries;
  std::vector<FactorRound> rounds;
  int looped_max = 0;  // largest looped size (0: none), for the workspace query
};
// sizes and src are per call. Throws std::logic_error when one matrix alone exceeds the
// scratch (the backend sizes the scratch for the largest matrix of the batch).
FactorPlan plan_factorization(const std::vector<int>& sizes, const std::vector<long long>& src,
                              long long scratch_doubles, const CholeskyTable& table);

// Device memory: the share of a card's free memory the backend plans into, what it sets
// aside before the networks (the scratch for damped matrices, the looped Cholesky's
// workspaces, and a fixed allowance for the CUDA context, the datasets and Thrust/CUB
// temporaries), and what is left for the networks of a chunk.
struct CudaMemory {
  std::size_t scratch = 0;    // bytes of the damped-matrix scratch
  std::size_t workspace = 0;  // bytes of cuSOLVER workspace, all streams
  std::size_t networks = 0;   // bytes for the networks (bytes_per_network each)
};
constexpr std::size_t kCudaReserve = std::size_t(512) << 20;
constexpr std::size_t kScratchMin = std::size_t(64) << 20;
constexpr std::size_t kScratchMax = std::size_t(4) << 30;
// scratch_request 0: an eighth of the usable memory, between kScratchMin and kScratchMax.
CudaMemory cuda_memory_plan(std::size_t free_bytes, double fraction, std::size_t scratch_request,
                            std::size_t workspace_bytes);

// Device bytes one network of num_params parameters on num_points points holds: its padded
// Hessian, vectors, residuals and trial parameters, and the part of its own damped copy the
// scratch cannot hold (nothing unless P^2 exceeds the scratch).
std::size_t cuda_bytes_per_network(int num_params, int num_points, std::size_t scratch_bytes);

}  // namespace gs
