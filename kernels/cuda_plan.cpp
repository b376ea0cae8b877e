// The CUDA backend's host-side planning (cuda_plan.h): plain arithmetic on sizes.
#include "cuda_plan.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <stdexcept>

#include "gpusweep/model/relu1d.h"
#include "worklist.h"

namespace gs {

const char* const kDefaultCholesky = "1:0,256:128,768:never";

long long padded_square(int m) {
  const long long sq = static_cast<long long>(m) * m;
  return (sq + kMatrixAlign - 1) / kMatrixAlign * kMatrixAlign;
}

std::vector<long long> matrix_offsets(const std::vector<int>& sizes) {
  std::vector<long long> off(sizes.size() + 1, 0);
  for (std::size_t i = 0; i < sizes.size(); ++i) off[i + 1] = off[i] + padded_square(sizes[i]);
  return off;
}

long long work_items(WorkItems kind, const CallShape& c) {
  switch (kind) {
    case WorkItems::kPointTiles: return ceil_div(c.points, kPointTile);
    case WorkItems::kParamTiles: return ceil_div(c.m, kParamTile);
    case WorkItems::kHessianTiles: return lower_tiles(c.m);
    case WorkItems::kNeurons: return c.neurons;
    case WorkItems::kNeuronsAndBias: return c.neurons + 1;
  }
  throw std::logic_error("work_items: unknown kind");
}

std::vector<long long> work_offsets(const std::vector<CallShape>& calls, WorkItems kind) {
  std::vector<long long> off(calls.size() + 1, 0);
  for (std::size_t j = 0; j < calls.size(); ++j) off[j + 1] = off[j] + work_items(kind, calls[j]);
  return off;
}

std::vector<long long> segment_offsets(const std::vector<long long>& off, int n_alpha) {
  const std::size_t count = off.size() - 1;
  const long long work = off.back();
  std::vector<long long> seg(count * n_alpha + 1);
  for (int t = 0; t < n_alpha; ++t)
    for (std::size_t j = 0; j < count; ++j) seg[t * count + j] = t * work + off[j];
  seg.back() = n_alpha * work;
  return seg;
}

namespace {

[[noreturn]] void bad_cholesky(const std::string& text, const std::string& why) {
  throw std::invalid_argument("--cholesky: " + why + " in '" + text +
                              "' (want auto, batched, looped, or SIZE:BATCH rules such as " +
                              kDefaultCholesky + ")");
}

int parse_count(const std::string& text, const std::string& s, const char* what) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    bad_cholesky(text, std::string("bad ") + what + " '" + s + "'");
  errno = 0;
  const long v = std::strtol(s.c_str(), nullptr, 10);
  if (errno != 0 || v >= kNeverBatched) bad_cholesky(text, std::string(what) + " '" + s + "' too large");
  return static_cast<int>(v);
}

}  // namespace

CholeskyTable parse_cholesky(const std::string& text) {
  if (text == "auto") return parse_cholesky(kDefaultCholesky);
  if (text == "batched") return CholeskyTable{{{1, 0}}};
  if (text == "looped") return CholeskyTable{{{1, kNeverBatched}}};
  CholeskyTable table;
  std::size_t pos = 0;
  while (true) {
    const std::size_t comma = text.find(',', pos);
    const std::string rule = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const std::size_t colon = rule.find(':');
    if (colon == std::string::npos) bad_cholesky(text, "rule '" + rule + "' lacks SIZE:BATCH");
    const int size = parse_count(text, rule.substr(0, colon), "size");
    const std::string b = rule.substr(colon + 1);
    const int batch = b == "never" ? kNeverBatched : parse_count(text, b, "batch");
    if (table.rules.empty() && size != 1) bad_cholesky(text, "the first rule must start at size 1");
    if (!table.rules.empty() && size <= table.rules.back().min_size)
      bad_cholesky(text, "sizes must increase");
    table.rules.push_back({size, batch});
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return table;
}

std::string cholesky_text(const CholeskyTable& table) {
  std::string s;
  for (const auto& r : table.rules) {
    if (!s.empty()) s += ',';
    s += std::to_string(r.min_size) + ':' + (r.min_batch >= kNeverBatched ? "never" : std::to_string(r.min_batch));
  }
  return s;
}

CholeskyPath choose_cholesky(const CholeskyTable& table, int m, int batch) {
  const CholeskyRule* rule = nullptr;
  for (const auto& r : table.rules)
    if (m >= r.min_size) rule = &r;
  if (!rule) throw std::logic_error("choose_cholesky: no rule for size " + std::to_string(m));
  return batch >= rule->min_batch ? CholeskyPath::kBatched : CholeskyPath::kLooped;
}

FactorPlan plan_factorization(const std::vector<int>& sizes, const std::vector<long long>& src,
                              long long scratch_doubles, const CholeskyTable& table) {
  if (sizes.size() != src.size()) throw std::logic_error("plan_factorization: sizes and offsets differ in length");
  FactorPlan plan;
  const auto groups = group_by_size(sizes);
  for (const auto& g : groups) {
    const int m = g.first;
    const int batch = static_cast<int>(g.second.size());
    const long long need = padded_square(m);
    if (need > scratch_doubles)
      throw std::logic_error("plan_factorization: a " + std::to_string(m) + " x " + std::to_string(m) +
                             " matrix exceeds the scratch of " + std::to_string(scratch_doubles) + " doubles");
    const CholeskyPath path = choose_cholesky(table, m, batch);
    if (path == CholeskyPath::kLooped) plan.looped_max = std::max(plan.looped_max, m);
    for (int j : g.second) {
      const int q = static_cast<int>(plan.entries.size());
      if (plan.rounds.empty() || plan.rounds.back().doubles + need > scratch_doubles)
        plan.rounds.push_back(FactorRound{q, q, 0, {}});
      FactorRound& r = plan.rounds.back();
      if (r.groups.empty() || r.groups.back().m != m) r.groups.push_back(FactorGroup{m, path, q, q});
      plan.entries.push_back(FactorEntry{j, m, src[j], r.doubles});
      r.doubles += need;
      r.end = q + 1;
      r.groups.back().end = q + 1;
    }
  }
  return plan;
}

CudaMemory cuda_memory_plan(std::size_t free_bytes, double fraction, std::size_t scratch_request,
                            std::size_t workspace_bytes) {
  CudaMemory mem;
  const double usable_d = fraction * static_cast<double>(free_bytes);
  const std::size_t usable = usable_d > kCudaReserve ? static_cast<std::size_t>(usable_d) - kCudaReserve : 0;
  mem.scratch = scratch_request > 0 ? scratch_request : std::clamp(usable / 8, kScratchMin, kScratchMax);
  mem.workspace = workspace_bytes;
  const std::size_t fixed = mem.scratch + mem.workspace;
  mem.networks = usable > fixed ? usable - fixed : 0;
  return mem;
}

std::size_t cuda_bytes_per_network(int p, int num_points, std::size_t scratch_bytes) {
  constexpr std::size_t kAlpha = 8;  // kMaxAlpha of batch_kernels.h (checked there)
  const std::size_t P = p, N = num_points;
  const std::size_t square = static_cast<std::size_t>(padded_square(p));
  const std::size_t scratch = scratch_bytes / sizeof(double);
  const std::size_t doubles = square                                          // H
                              + (square > scratch ? square - scratch : 0)     // A beyond the scratch
                              + 5 * P                                         // theta, g, step, scale, slack
                              + kAlpha * P                                    // trial parameters
                              + N                                             // residuals
                              + (2 * kColCoef + 2) * P + 8                    // relu1d columns, owners, ranges, moments
                              + kAlpha * (N / kPointTile + 1)                 // partial sums of the trials
                              + 4 * kAlpha;                                   // segment offsets and sums
  return doubles * sizeof(double) + 512;  // + call lists, work offsets, the solve's entries, pointers, info
}

}  // namespace gs
