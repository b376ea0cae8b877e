// The network math of model/ (activation.h, network.h: the __host__ __device__ functions the
// CPU backend and the kernels share) compiled for the device, by nvcc for a GPU or by the host
// compiler for the emulated device, and run there: one thread per point. Each value is checked
// against the CPU's (the same headers compiled for the host), and independently: the network's
// value against a reference written here from its definition, its Jacobian row and its neuron
// Hessians against central differences, the parameter layout against its own invariants.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_skip.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/model.h"
#include "gpusweep/model/network.h"
#include "launch.cuh"

namespace gs {
namespace {

// ---- the device side ------------------------------------------------------------------------

// Thread k: point k (x + k d) of one network. y and yj get evaluate and jacobian_row's value,
// rows the Jacobian row (P each), entries the same row entry by entry (param_owner and
// jacobian_entry), blocks the Hessian of neuron k % n (nk x nk each).
__global__ void network_kernel(Shape s, const double* theta, const double* x, int npts, double* y,
                               double* yj, double* rows, double* entries, double* blocks) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= npts) return;
  const double* xk = x + static_cast<long>(k) * s.d;
  const int p = num_params(s);
  y[k] = evaluate(s, theta, xk);
  yj[k] = jacobian_row(s, theta, xk, rows + static_cast<long>(k) * p);
  for (int q = 0; q < p; ++q) {
    int i = 0, c = 0;
    entries[static_cast<long>(k) * p + q] =
        param_owner(s, q, &i, &c) ? jacobian_entry(s, eval_neuron(s, theta, xk, i), xk, c) : 1.0;
  }
  const int nk = neuron_num_params(s);
  const NeuronEval e = eval_neuron(s, theta, xk, k % s.n);
  neuron_hessian(s, e, xk, blocks + static_cast<long>(k) * nk * nk);
}

// Thread k: s, s', s'' of the activation at a[k], into out[3 k ..].
__global__ void activation_kernel(Act act, const double* a, int count, double* out) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= count) return;
  const ActEval r = activate(act, a[k]);
  out[3 * k] = r.s;
  out[3 * k + 1] = r.ds;
  out[3 * k + 2] = r.d2s;
}

// One thread: the layout of one shape (layout_ints's order) into out.
HD inline int layout_ints(const Shape& s, int* out) {
  int c = 0;
  out[c++] = num_params(s);
  out[c++] = neuron_num_params(s);
  out[c++] = effective_params(s);
  out[c++] = num_poly_terms(s);
  for (int i = 0; i < s.n; ++i)
    for (int k = 0; k < neuron_num_params(s); ++k) out[c++] = neuron_param_index(s, i, k);
  for (int b = 0; b <= static_cast<int>(Block::kAll); ++b) {
    const Block blk = static_cast<Block>(b);
    const bool has = has_block(s.arch, blk);
    int begin = -1, end = -1;
    if (has) stage_range(s, blk, &begin, &end);
    out[c++] = has;
    out[c++] = begin;
    out[c++] = end;
    out[c++] = stage_is_linear(s.arch, blk);
  }
  return c;
}

__global__ void layout_kernel(Shape s, int* out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) layout_ints(s, out);
}

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : n_(host.size()) {
    cuda_ok(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<std::size_t>(1, n_) * sizeof(T)), "cudaMalloc");
    if (n_ > 0) cuda_ok(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  explicit DeviceArray(std::size_t n) : DeviceArray(std::vector<T>(n, T{})) {}
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() { return p_; }
  std::vector<T> read() const {
    std::vector<T> out(n_);
    if (n_ > 0) cuda_ok(cudaMemcpy(out.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    return out;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_;
};

void finish(const char* what) {
  cuda_ok(cudaGetLastError(), what);
  cuda_ok(cudaDeviceSynchronize(), what);
}

// ---- the references -------------------------------------------------------------------------

// Each activation from its definition (gelu through erfc, the others through exp).
double reference_act(Act act, double a) {
  switch (act) {
    case Act::kRelu: return a > 0.0 ? a : 0.0;
    case Act::kGelu: return 0.5 * a * std::erfc(-a / std::sqrt(2.0));
    case Act::kSilu: return a / (1.0 + std::exp(-a));
    case Act::kSigmoid: return 1.0 / (1.0 + std::exp(-a));
  }
  return NAN;
}

// The monomials of total degree <= K in d variables in network.h's order, from exponent
// vectors: degree by degree, and within a degree x_j times each monomial of the degree below
// whose lowest variable is j or later, j ascending.
std::vector<double> reference_monomials(int d, int K, const double* x) {
  struct Mono {
    std::vector<int> e;
    int low;
  };
  std::vector<Mono> all{{std::vector<int>(d, 0), d}};
  std::vector<Mono> prev = all;
  for (int t = 1; t <= K; ++t) {
    std::vector<Mono> next;
    for (int j = 0; j < d; ++j)
      for (const Mono& m : prev)
        if (m.low >= j) {
          Mono n = m;
          ++n.e[j];
          n.low = j;
          next.push_back(n);
        }
    all.insert(all.end(), next.begin(), next.end());
    prev = next;
  }
  std::vector<double> v;
  for (const Mono& m : all) {
    double p = 1.0;
    for (int j = 0; j < d; ++j) p *= std::pow(x[j], m.e[j]);
    v.push_back(p);
  }
  return v;
}

// y(x) from the definition: d0 + sum_i q_i(x) s(a_i0) prod_{b >= 1} a_ib, with factor b's
// rows W_b (n x d) then biases w_b (n), then the coefficients D (n x M), then d0.
double reference_y(const Shape& s, const std::vector<double>& th, const double* x) {
  const int nf = num_factors(s.arch);
  const std::vector<double> mono = reference_monomials(s.d, poly_degree(s.arch), x);
  const int M = static_cast<int>(mono.size());
  const std::size_t d_at = static_cast<std::size_t>(nf) * s.n * (s.d + 1);
  double y = th.back();
  for (int i = 0; i < s.n; ++i) {
    double gate = 0.0, prod = 1.0;
    for (int b = 0; b < nf; ++b) {
      const std::size_t at = static_cast<std::size_t>(b) * s.n * (s.d + 1);
      double a = th[at + static_cast<std::size_t>(s.n) * s.d + i];
      for (int j = 0; j < s.d; ++j) a += th[at + static_cast<std::size_t>(i) * s.d + j] * x[j];
      if (b == 0) gate = a;
      else prod *= a;
    }
    double q = 0.0;
    for (int a = 0; a < M; ++a) q += th[d_at + static_cast<std::size_t>(i) * M + a] * mono[a];
    y += q * reference_act(s.act, gate) * prod;
  }
  return y;
}

// Every neuron's gate a_i0 at x, for keeping relu's kinks out of the differences.
double smallest_gate(const Shape& s, const std::vector<double>& th, const double* x) {
  double m = INFINITY;
  for (int i = 0; i < s.n; ++i) m = std::fmin(m, std::fabs(eval_neuron(s, th.data(), x, i).a[0]));
  return m;
}

// |got - want| <= tol (1 + |want|): the device against the CPU or a difference quotient.
struct Mismatches {
  Mismatches() { first.precision(17); }
  int count = 0;
  std::ostringstream first;
  void check(const std::string& what, double got, double want, double tol) {
    if (std::fabs(got - want) <= tol * (1.0 + std::fabs(want))) return;
    if (++count <= 5) first << "  " << what << ": " << got << " vs " << want << "\n";
  }
};

constexpr double kSame = 1e-12;  // the device against the CPU's same formula (fma, libm ulps)
constexpr double kStep = 1e-6;   // central differences
constexpr double kDiff = 1e-6;   // ... their truncation and rounding

std::string case_name(const Shape& s) {
  return std::string(arch_name(s.arch)) + " " + act_name(s.act) + " d=" + std::to_string(s.d);
}

// ---- the tests ------------------------------------------------------------------------------

TEST(DeviceMath, ActivationsMatchTheCpuAndTheirDefinitions) {
  SKIP_WITHOUT_GPU();
  std::vector<double> a;
  for (int k = -400; k <= 400; ++k) a.push_back(k * 0.05 + 0.0125);  // no point on relu's kink
  a.push_back(-750.0);  // exp overflows in a naive sigmoid
  a.push_back(750.0);
  const int n = static_cast<int>(a.size());
  DeviceArray<double> a_dev(a);
  for (Act act : {Act::kRelu, Act::kGelu, Act::kSilu, Act::kSigmoid}) {
    DeviceArray<double> out_dev(3 * a.size());
    GS_LAUNCH(activation_kernel, (n + 127) / 128, 128, 0, nullptr)(act, a_dev.get(), n, out_dev.get());
    finish("activation_kernel");
    const std::vector<double> out = out_dev.read();
    Mismatches bad;
    for (int k = 0; k < n; ++k) {
      const ActEval cpu = activate(act, a[k]);
      const std::string at = std::string(act_name(act)) + " at " + std::to_string(a[k]);
      bad.check(at + " s", out[3 * k], cpu.s, kSame);
      bad.check(at + " s'", out[3 * k + 1], cpu.ds, kSame);
      bad.check(at + " s''", out[3 * k + 2], cpu.d2s, kSame);
      bad.check(at + " s, definition", out[3 * k], reference_act(act, a[k]), 1e-14);
      if (std::fabs(a[k]) < 50.0) {
        const double h = kStep;
        const double ds = (reference_act(act, a[k] + h) - reference_act(act, a[k] - h)) / (2 * h);
        const double d2s = (activate(act, a[k] + h).ds - activate(act, a[k] - h).ds) / (2 * h);
        bad.check(at + " s', difference", out[3 * k + 1], ds, kDiff);
        bad.check(at + " s'', difference", out[3 * k + 2], d2s, kDiff);
      }
    }
    EXPECT_EQ(bad.count, 0) << act_name(act) << ", first mismatches:\n" << bad.first.str();
  }
}

class DeviceNetwork : public ::testing::TestWithParam<int> {};

TEST_P(DeviceNetwork, MatchesTheCpuTheDefinitionAndDifferences) {
  SKIP_WITHOUT_GPU();
  const Arch arch = row_arch(kArchTable[GetParam()]);
  constexpr int kPoints = 16, kWidth = 3;
  int cases = 0, differenced = 0;
  for (Act act : {Act::kRelu, Act::kGelu, Act::kSilu, Act::kSigmoid})
    for (int d : {1, 2, 3}) {
      if (poly_term_count(d, poly_degree(arch)) > kMaxPolyTerms) continue;
      const Shape s{arch, act, d, kWidth};
      const int p = num_params(s), nk = neuron_num_params(s);
      Rng rng(mix_seed(static_cast<std::uint64_t>(GetParam()), 31 * static_cast<int>(act) + d));
      std::vector<double> th(p), x(static_cast<std::size_t>(kPoints) * d);
      for (double& v : th) v = 0.8 * rng.normal();
      for (double& v : x) v = -1.0 + 2.0 * rng.uniform();
      DeviceArray<double> th_dev(th), x_dev(x), y_dev(kPoints), yj_dev(kPoints);
      DeviceArray<double> rows_dev(static_cast<std::size_t>(kPoints) * p);
      DeviceArray<double> entries_dev(static_cast<std::size_t>(kPoints) * p);
      DeviceArray<double> blocks_dev(static_cast<std::size_t>(kPoints) * nk * nk);
      GS_LAUNCH(network_kernel, 1, 32, 0, nullptr)(s, th_dev.get(), x_dev.get(), kPoints, y_dev.get(),
                                                   yj_dev.get(), rows_dev.get(), entries_dev.get(),
                                                   blocks_dev.get());
      finish("network_kernel");
      const std::vector<double> y = y_dev.read(), yj = yj_dev.read(), rows = rows_dev.read(),
                                entries = entries_dev.read(), blocks = blocks_dev.read();
      ++cases;
      Mismatches bad;
      std::vector<double> row(p), lo(p), hi(p), blk(static_cast<std::size_t>(nk) * nk);
      for (int k = 0; k < kPoints; ++k) {
        const double* xk = x.data() + static_cast<std::size_t>(k) * d;
        const double* dev_row = rows.data() + static_cast<std::size_t>(k) * p;
        const double* dev_blk = blocks.data() + static_cast<std::size_t>(k) * nk * nk;
        const std::string pt = " point " + std::to_string(k);
        // The CPU: the same headers compiled for the host.
        const double cpu_y = jacobian_row(s, th.data(), xk, row.data());
        const int i = k % kWidth;
        neuron_hessian(s, eval_neuron(s, th.data(), xk, i), xk, blk.data());
        bad.check("evaluate" + pt, y[k], evaluate(s, th.data(), xk), kSame);
        bad.check("jacobian_row's y" + pt, yj[k], cpu_y, kSame);
        for (int q = 0; q < p; ++q) {
          bad.check("J[" + std::to_string(q) + "]" + pt, dev_row[q], row[q], kSame);
          bad.check("jacobian_entry " + std::to_string(q) + pt, entries[static_cast<std::size_t>(k) * p + q], row[q], kSame);
        }
        for (int q = 0; q < nk * nk; ++q)
          bad.check("H_" + std::to_string(i) + "[" + std::to_string(q) + "]" + pt, dev_blk[q], blk[q], kSame);
        // Independently: the definition, and differences across no relu kink.
        bad.check("y, definition" + pt, y[k], reference_y(s, th, xk), 1e-11);
        if (act == Act::kRelu && smallest_gate(s, th, xk) < 1e-4) continue;
        ++differenced;
        std::vector<double> t = th;
        for (int q = 0; q < p; ++q) {
          t[q] = th[q] + kStep;
          const double up = reference_y(s, t, xk);
          t[q] = th[q] - kStep;
          const double down = reference_y(s, t, xk);
          t[q] = th[q];
          bad.check("J[" + std::to_string(q) + "], difference" + pt, dev_row[q], (up - down) / (2 * kStep), kDiff);
        }
        // Neuron i's Hessian: differences of the CPU's Jacobian row in its own parameters.
        for (int c = 0; c < nk; ++c) {
          const int q = neuron_param_index(s, i, c);
          t[q] = th[q] + kStep;
          jacobian_row(s, t.data(), xk, hi.data());
          t[q] = th[q] - kStep;
          jacobian_row(s, t.data(), xk, lo.data());
          t[q] = th[q];
          for (int r = 0; r < nk; ++r) {
            const int qr = neuron_param_index(s, i, r);
            bad.check("H_" + std::to_string(i) + "(" + std::to_string(r) + "," + std::to_string(c) + "), difference" + pt,
                      dev_blk[r * nk + c], (hi[qr] - lo[qr]) / (2 * kStep), kDiff);
          }
        }
      }
      EXPECT_EQ(bad.count, 0) << case_name(s) << ", first mismatches:\n" << bad.first.str();
    }
  EXPECT_GT(cases, 0);
  EXPECT_GT(differenced, cases * kPoints / 2) << "too many points next to a relu kink to difference";
}

TEST_P(DeviceNetwork, LayoutMatchesTheCpuAndCoversEveryParameter) {
  SKIP_WITHOUT_GPU();
  const Arch arch = row_arch(kArchTable[GetParam()]);
  for (int d : {1, 2, 3}) {
    if (poly_term_count(d, poly_degree(arch)) > kMaxPolyTerms) continue;
    for (Act act : {Act::kRelu, Act::kSilu}) {
      const Shape s{arch, act, d, 3};
      std::vector<int> cpu(16 + s.n * neuron_num_params(s) + 4 * (static_cast<int>(Block::kAll) + 1));
      const int used = layout_ints(s, cpu.data());
      DeviceArray<int> out_dev(cpu.size());
      GS_LAUNCH(layout_kernel, 1, 1, 0, nullptr)(s, out_dev.get());
      finish("layout_kernel");
      const std::vector<int> dev = out_dev.read();
      for (int c = 0; c < used; ++c) ASSERT_EQ(dev[c], cpu[c]) << case_name(s) << ", entry " << c;
      // Independently: the neurons' parameters and d0 are every parameter, each once.
      const int p = dev[0], nk = dev[1];
      std::map<int, int> seen;
      for (int c = 0; c < s.n * nk; ++c) ++seen[dev[4 + c]];
      EXPECT_EQ(static_cast<int>(seen.size()), p - 1) << case_name(s);
      EXPECT_EQ(seen.begin()->first, 0) << case_name(s);
      EXPECT_EQ(seen.rbegin()->first, p - 2) << case_name(s);
      for (const auto& [q, times] : seen) EXPECT_EQ(times, 1) << case_name(s) << ", parameter " << q;
    }
  }
}

std::string arch_param_name(const ::testing::TestParamInfo<int>& info) {
  std::string name = arch_name(row_arch(kArchTable[info.param]));
  for (char& c : name)
    if (c == ':') c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(EveryArch, DeviceNetwork, ::testing::Range(0, kNumArchs), arch_param_name);

}  // namespace
}  // namespace gs
