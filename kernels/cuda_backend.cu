// CudaBackend: device buffers, work lists (Thrust scans), segmented loss sums (Thrust
// reduce_by_key) and the cuSOLVER Cholesky, grouped by matrix size.
//
// Stream rules: everything runs on one stream, in order. The host synchronizes only where it
// reads results back (losses, factorization info, step products), and at the end of every
// public operation so that its wall time can be charged to the networks it acted on.
#include "cuda_backend.h"

#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <cmath>
#include <stdexcept>

#include "batch_kernels.h"
#include "cuda_check.h"
#include "gpusweep/relu1d.h"
#include "gpusweep/worklist.h"

namespace gs {
namespace {

// A move-only owner of n elements of device memory (plain cudaMalloc).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  // Makes room for at least n elements; contents are not kept.
  void reserve(std::size_t n) {
    if (n <= n_) return;
    release();
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<std::size_t>(n, 1) * sizeof(T)));
    n_ = n;
  }
  void upload(const T* h, std::size_t n, cudaStream_t s) {
    reserve(n);
    if (n) CUDA_CHECK(cudaMemcpyAsync(p_, h, n * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  void release() {
    if (p_) cudaFree(p_);  // never throws from a destructor; a failed free leaks at worst
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// Work index -> (trial t, call j) key of a segmented sum laid out [t][w].
struct SegmentKey {
  const long long* work_off;
  int count;
  long long work;
  __host__ __device__ long long operator()(long long idx) const {
    const long long t = idx / work;
    return t * count + find_segment(work_off, count, idx - t * work);
  }
};

constexpr int kLoopStreams = 4;

}  // namespace

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a missing driver
    if (why) *why = cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device is visible";
  return n;
}

struct CudaBackend::Impl {
  CudaOptions opt;
  int device = 0;
  std::string name;
  std::size_t free_at_start = 0;
  cudaStream_t stream = nullptr;
  cudaStream_t loop_streams[kLoopStreams] = {};
  cudaEvent_t ev_a = nullptr, ev_b = nullptr, ev_c = nullptr, ev_d = nullptr, ev_join = nullptr;
  cusolverDnHandle_t solver = nullptr;
  cusolverDnHandle_t loop_solvers[kLoopStreams] = {};  // one per loop stream, bound to it
  CudaStats stats;

  // Host mirror of the batch.
  std::vector<DevNet> nets;
  std::vector<int> stage_b, stage_e, n_train, n_test;
  std::vector<char> fast;  // relu on 1D data: the relu1d assembly
  std::vector<double> seconds;
  long long total_params = 0;

  // Device arrays.
  std::vector<DeviceBuffer<double>> data;  // per dataset: x_train, y_train, x_test, y_test
  DeviceBuffer<DevSet> train_sets, test_sets;
  DeviceBuffer<DevNet> d_nets;
  DeviceBuffer<double> theta, H, A, g, step, scale, trial, resid, partial, sums, per_call;
  DeviceBuffer<double> coef;  // damping per call, or the line search's trial lengths
  DeviceBuffer<double> cols, rmom;  // relu1d: column polynomials, moments of r x^j
  DeviceBuffer<int> colnrn, range;  // relu1d: owner of each column, active ranges
  DeviceBuffer<CallNet> calls_fast, calls_slow;
  DeviceBuffer<CallNet> calls;
  DeviceBuffer<long long> items, work_off, keys;
  DeviceBuffer<long long> asm_off[4];  // the assembly's work lists, built before it is timed
  DeviceBuffer<int> info, potrs_info;
  DeviceBuffer<double*> ptrs;
  DeviceBuffer<double> loop_work[kLoopStreams];

  // Uploads the call list for nets (stage ranges from stage_b/e) into buf.
  void upload_calls(const std::vector<int>& list, DeviceBuffer<CallNet>& buf) {
    std::vector<CallNet> h(list.size());
    for (std::size_t j = 0; j < list.size(); ++j) h[j] = {list[j], stage_b[list[j]], stage_e[list[j]]};
    buf.upload(h.data(), h.size(), stream);
  }
  void upload_calls(const std::vector<int>& list) { upload_calls(list, calls); }

  // Scans the items per call of one work list into work_off; returns the total.
  long long build_work(int count, WorkKind kind, const DevSet* sets) {
    return build_work(calls.get(), count, kind, sets);
  }
  long long build_work(const CallNet* cl, int count, WorkKind kind, const DevSet* sets) {
    return build_work(cl, count, kind, sets, work_off);
  }
  long long build_work(const CallNet* cl, int count, WorkKind kind, const DevSet* sets,
                       DeviceBuffer<long long>& off) {
    items.reserve(count + 1);
    off.reserve(count + 1);
    CUDA_CHECK(cudaMemsetAsync(items.get(), 0, (count + 1) * sizeof(long long), stream));
    count_work(cl, count, d_nets.get(), sets, kind, items.get(), stream);
    thrust::exclusive_scan(thrust::cuda::par_nosync.on(stream),
                           thrust::device_ptr<long long>(items.get()),
                           thrust::device_ptr<long long>(items.get() + count + 1),
                           thrust::device_ptr<long long>(off.get()));
    long long total = 0;
    CUDA_CHECK(cudaMemcpyAsync(&total, off.get() + count, sizeof total, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    return total;
  }

  // Sums partial[t * work + w] over the work items of each call, for t < n_alpha, into
  // out[t * count + j] (host). Calls with no work items get 0.
  void segmented_sums(int count, long long work, int n_alpha, std::vector<double>& out) {
    out.assign(static_cast<std::size_t>(count) * n_alpha, 0.0);
    if (work == 0 || count == 0) return;
    const long long len = work * n_alpha;
    keys.reserve(len);
    sums.reserve(len);
    auto key_it = thrust::make_transform_iterator(thrust::counting_iterator<long long>(0),
                                                  SegmentKey{work_off.get(), count, work});
    auto ends = thrust::reduce_by_key(thrust::cuda::par.on(stream), key_it, key_it + len,
                                      thrust::device_ptr<double>(partial.get()),
                                      thrust::device_ptr<long long>(keys.get()),
                                      thrust::device_ptr<double>(sums.get()));
    const long long got = ends.first - thrust::device_ptr<long long>(keys.get());
    std::vector<long long> hk(got);
    std::vector<double> hv(got);
    CUDA_CHECK(cudaMemcpyAsync(hk.data(), keys.get(), got * sizeof(long long), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaMemcpyAsync(hv.data(), sums.get(), got * sizeof(double), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (long long q = 0; q < got; ++q) out[hk[q]] = hv[q];
  }

  // Charges the wall time of one operation to its networks, in proportion to m^2 (the
  // assembly and factorization work that dominates each of them).
  void charge(const std::vector<int>& list, double secs) {
    double total = 0.0;
    for (int i : list) total += std::pow(double(stage_e[i] - stage_b[i]) + 1.0, 2);
    if (total <= 0.0) return;
    for (int i : list) seconds[i] += secs * std::pow(double(stage_e[i] - stage_b[i]) + 1.0, 2) / total;
  }

  void factorize(const std::vector<int>& list, std::vector<int>& h_info);
};

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

CudaBackend::CudaBackend(const CudaOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  I.opt = options;
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0) throw std::runtime_error("--device cuda: no CUDA device is visible (" + why + ")");
  if (options.device < 0 || options.device >= n)
    throw std::runtime_error("--device cuda: device " + std::to_string(options.device) +
                             " does not exist (" + std::to_string(n) + " visible)");
  I.device = options.device;
  CUDA_CHECK(cudaSetDevice(I.device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, I.device));
  std::size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  I.free_at_start = free_b;
  char buf[256];
  std::snprintf(buf, sizeof buf, "cuda (%s, sm_%d%d, %.1f GiB, cuSOLVER Cholesky)", prop.name,
                prop.major, prop.minor, total_b / 1073741824.0);
  I.name = buf;
  CUDA_CHECK(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking));
  for (auto& s : I.loop_streams) CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreate(&I.ev_a));
  CUDA_CHECK(cudaEventCreate(&I.ev_b));
  CUDA_CHECK(cudaEventCreate(&I.ev_c));
  CUDA_CHECK(cudaEventCreate(&I.ev_d));
  CUDA_CHECK(cudaEventCreateWithFlags(&I.ev_join, cudaEventDisableTiming));
  CUSOLVER_CHECK(cusolverDnCreate(&I.solver));
  CUSOLVER_CHECK(cusolverDnSetStream(I.solver, I.stream));
  for (int k = 0; k < kLoopStreams; ++k) {
    CUSOLVER_CHECK(cusolverDnCreate(&I.loop_solvers[k]));
    CUSOLVER_CHECK(cusolverDnSetStream(I.loop_solvers[k], I.loop_streams[k]));
  }
}

CudaBackend::~CudaBackend() {
  if (!impl_) return;
  Impl& I = *impl_;
  // Teardown errors cannot be reported from a destructor; they are ignored.
  if (I.solver) cusolverDnDestroy(I.solver);
  for (auto& h : I.loop_solvers)
    if (h) cusolverDnDestroy(h);
  if (I.ev_a) cudaEventDestroy(I.ev_a);
  if (I.ev_b) cudaEventDestroy(I.ev_b);
  if (I.ev_c) cudaEventDestroy(I.ev_c);
  if (I.ev_d) cudaEventDestroy(I.ev_d);
  if (I.ev_join) cudaEventDestroy(I.ev_join);
  for (auto& s : I.loop_streams)
    if (s) cudaStreamDestroy(s);
  if (I.stream) cudaStreamDestroy(I.stream);
}

std::string CudaBackend::describe() const { return impl_->name; }

std::size_t cuda_bytes_per_network(int p, int num_points) {
  const std::size_t P = p, N = num_points;
  const std::size_t doubles = 2 * P * P                   // H and its damped copy A
                              + 5 * P                      // theta, g, step, scale, slack
                              + static_cast<std::size_t>(kMaxAlpha) * P  // trial parameters
                              + N                          // residuals
                              + 7 * P + 8                  // relu1d columns, owners, ranges, moments
                              + static_cast<std::size_t>(kMaxAlpha) * (N / kPointTile + 1) * 3;
  return doubles * sizeof(double) + 256;  // + call lists, offsets, pointers, info
}

std::size_t cuda_memory_budget(std::size_t free_bytes, double fraction) {
  // Leave room for the CUDA context's own growth, cuSOLVER and Thrust temporaries and the
  // datasets.
  const std::size_t reserve = std::size_t(512) << 20;
  const double usable = fraction * static_cast<double>(free_bytes);
  return usable > reserve ? static_cast<std::size_t>(usable) - reserve : 0;
}

std::size_t CudaBackend::bytes_per_network(int p, int num_points) const {
  return cuda_bytes_per_network(p, num_points);
}

std::size_t CudaBackend::memory_budget() const {
  return cuda_memory_budget(impl_->free_at_start, impl_->opt.memory_fraction);
}

void CudaBackend::load(const Batch& batch) {
  Impl& I = *impl_;
  const int n = batch.size();
  I.nets.resize(n);
  I.stage_b.assign(n, 0);
  I.stage_e.assign(n, 0);
  I.n_train.resize(n);
  I.n_test.resize(n);
  I.seconds.assign(n, 0.0);
  I.fast.resize(n);
  long long sq = 0, vec = 0, res = 0, nrn = 0;
  for (int i = 0; i < n; ++i) {
    const NetDesc& nd = batch.nets[i];
    const long long p = num_params(nd.shape);
    I.nets[i] = DevNet{nd.shape, nd.dataset, static_cast<long long>(nd.offset), sq, vec, res, nrn};
    I.fast[i] = relu1d_fast_path(nd.shape);
    sq += p * p;
    vec += p;
    nrn += nd.shape.n + 1;
    I.n_train[i] = batch.datasets[nd.dataset]->n_train();
    I.n_test[i] = batch.datasets[nd.dataset]->n_test();
    res += I.n_train[i];
  }
  I.total_params = static_cast<long long>(batch.params.size());
  const int nd = static_cast<int>(batch.datasets.size());
  I.data.clear();
  I.data.resize(5 * nd);
  std::vector<DevSet> tr(nd), te(nd);
  for (int k = 0; k < nd; ++k) {
    const Dataset& ds = *batch.datasets[k];
    const int npts = ds.n_train();
    if (ds.d == 1) {
      // Sorted by x, with the prefix sums of x^j, for the relu1d assembly. The order of the
      // points changes no sum but the rounding of the losses.
      std::vector<int> order(npts);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return ds.x_train[a] < ds.x_train[b]; });
      std::vector<double> xs(npts), ys(npts), pre(static_cast<std::size_t>(kNumMoments) * (npts + 1) * 2);
      for (int q = 0; q < npts; ++q) {
        xs[q] = ds.x_train[order[q]];
        ys[q] = ds.y_train[order[q]];
      }
      build_prefix(xs.data(), nullptr, npts, kNumMoments, pre.data());
      I.data[5 * k + 0].upload(xs.data(), xs.size(), I.stream);
      I.data[5 * k + 1].upload(ys.data(), ys.size(), I.stream);
      I.data[5 * k + 4].upload(pre.data(), pre.size(), I.stream);
      CUDA_CHECK(cudaStreamSynchronize(I.stream));  // before the host vectors go
    } else {
      I.data[5 * k + 0].upload(ds.x_train.data(), ds.x_train.size(), I.stream);
      I.data[5 * k + 1].upload(ds.y_train.data(), ds.y_train.size(), I.stream);
    }
    I.data[5 * k + 2].upload(ds.x_test.data(), ds.x_test.size(), I.stream);
    I.data[5 * k + 3].upload(ds.y_test.data(), ds.y_test.size(), I.stream);
    tr[k] = DevSet{I.data[5 * k].get(), I.data[5 * k + 1].get(), npts, ds.d == 1 ? I.data[5 * k + 4].get() : nullptr};
    te[k] = DevSet{I.data[5 * k + 2].get(), I.data[5 * k + 3].get(), ds.n_test(), nullptr};
  }
  I.train_sets.upload(tr.data(), nd, I.stream);
  I.test_sets.upload(te.data(), nd, I.stream);
  I.d_nets.upload(I.nets.data(), n, I.stream);
  I.theta.upload(batch.params.data(), batch.params.size(), I.stream);
  I.H.reserve(sq);
  I.A.reserve(sq);
  I.g.reserve(vec);
  I.step.reserve(vec);
  I.scale.reserve(vec);
  I.trial.reserve(static_cast<std::size_t>(I.total_params) * kMaxAlpha);
  I.resid.reserve(res);
  I.cols.reserve(vec * kColCoef);
  I.colnrn.reserve(vec);
  I.range.reserve(2 * nrn);
  I.rmom.reserve(nrn * kColCoef);
  I.per_call.reserve(n);
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
}

void CudaBackend::read_params(std::vector<double>& params) {
  Impl& I = *impl_;
  params.resize(I.total_params);
  CUDA_CHECK(cudaMemcpyAsync(params.data(), I.theta.get(), params.size() * sizeof(double),
                             cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
}

void CudaBackend::assemble(const std::vector<int>& list, Block stage, HessianKind kind,
                           double* loss, double* scaled_grad) {
  Impl& I = *impl_;
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  bool nonlinear = false;
  for (int i : list) {
    const Shape& s = I.nets[i].s;
    stage_range(s, stage, &I.stage_b[i], &I.stage_e[i]);
    nonlinear = nonlinear || !stage_is_linear(s.arch, stage);
  }
  I.upload_calls(list);

  // Residuals and losses.
  const long long wp = I.build_work(count, WorkKind::kPointTiles, I.train_sets.get());
  I.partial.reserve(wp);
  residuals(I.calls.get(), count, I.work_off.get(), wp, I.d_nets.get(), I.train_sets.get(),
            I.theta.get(), I.resid.get(), I.partial.get(), I.stream);
  std::vector<double> sse;
  I.segmented_sums(count, wp, 1, sse);
  for (int j = 0; j < count; ++j) loss[j] = sse[j] / I.n_train[list[j]];

  std::vector<int> fast, slow;
  for (int i : list) (I.fast[i] ? fast : slow).push_back(i);
  const bool curvature = kind == HessianKind::kExact && nonlinear;
  const int cs = static_cast<int>(slow.size()), cf = static_cast<int>(fast.size());
  // Work lists first, so that the timed window holds only the assembly kernels.
  long long wk[4] = {0, 0, 0, 0};
  if (cs > 0) {
    I.upload_calls(slow, I.calls_slow);
    const CallNet* cl = I.calls_slow.get();
    wk[0] = I.build_work(cl, cs, WorkKind::kParamTiles, nullptr, I.asm_off[0]);
    wk[1] = I.build_work(cl, cs, WorkKind::kHessianTiles, nullptr, I.asm_off[1]);
    if (curvature) wk[2] = I.build_work(cl, cs, WorkKind::kNeurons, nullptr, I.asm_off[2]);
  }
  CUDA_CHECK(cudaEventRecord(I.ev_a, I.stream));
  if (cs > 0) {
    // The general assembly: J^T J tiles over every point, gradient and curvature per point.
    const CallNet* cl = I.calls_slow.get();
    gs::gradient(cl, cs, I.asm_off[0].get(), wk[0], I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                 I.resid.get(), I.g.get(), I.stream);
    hessian_tiles(cl, cs, I.asm_off[1].get(), wk[1], I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                  I.H.get(), I.stream);
    if (curvature)
      add_curvature(cl, cs, I.asm_off[2].get(), wk[2], I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                    I.resid.get(), I.H.get(), I.stream);
    for (int i : slow) {
      const double m = I.stage_e[i] - I.stage_b[i];
      I.stats.assemble_flops += m * (m + 1.0) * I.n_train[i];
    }
  }
  CUDA_CHECK(cudaEventRecord(I.ev_b, I.stream));
  if (cf > 0) {
    // relu on 1D data: moments and Hankel forms (relu1d.h), timed separately.
    I.upload_calls(fast, I.calls_fast);
    const CallNet* cl = I.calls_fast.get();
    const long long wn = I.build_work(cl, cf, WorkKind::kNeuronsAndBias, nullptr, I.asm_off[0]);
    const long long wg = I.build_work(cl, cf, WorkKind::kParamTiles, nullptr, I.asm_off[1]);
    const long long wh = I.build_work(cl, cf, WorkKind::kHessianTiles, nullptr, I.asm_off[2]);
    const long long wc = curvature ? I.build_work(cl, cf, WorkKind::kNeurons, nullptr, I.asm_off[3]) : 0;
    CUDA_CHECK(cudaEventRecord(I.ev_c, I.stream));
    relu1d_neurons(cl, cf, I.asm_off[0].get(), wn, I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                   I.resid.get(), I.range.get(), I.rmom.get(), I.stream);
    relu1d_gradient(cl, cf, I.asm_off[1].get(), wg, I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                    I.rmom.get(), I.cols.get(), I.colnrn.get(), I.g.get(), I.stream);
    relu1d_hessian(cl, cf, I.asm_off[2].get(), wh, I.d_nets.get(), I.train_sets.get(), I.cols.get(),
                   I.colnrn.get(), I.range.get(), I.H.get(), I.stream);
    if (curvature)
      relu1d_curvature(cl, cf, I.asm_off[3].get(), wc, I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                       I.range.get(), I.rmom.get(), I.H.get(), I.stream);
    CUDA_CHECK(cudaEventRecord(I.ev_d, I.stream));
    for (int i : fast) {
      const double m = I.stage_e[i] - I.stage_b[i];
      I.stats.relu1d_entries += m * (m + 1.0) / 2.0;
    }
  }

  jacobi_scale(I.calls.get(), count, I.d_nets.get(), I.H.get(), I.g.get(), I.scale.get(),
               I.per_call.get(), I.stream);
  CUDA_CHECK(cudaMemcpyAsync(scaled_grad, I.per_call.get(), count * sizeof(double),
                             cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
  float ms = 0.0f;
  if (cs > 0) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, I.ev_a, I.ev_b));
    I.stats.assemble_seconds += ms * 1e-3;
  }
  if (cf > 0) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, I.ev_c, I.ev_d));
    I.stats.relu1d_seconds += ms * 1e-3;
  }
  I.charge(list, now() - t0);
}

void CudaBackend::read_system(int i, std::vector<double>* H, std::vector<double>* g) {
  Impl& I = *impl_;
  const std::size_t m = I.stage_e[i] - I.stage_b[i];
  H->resize(m * m);
  g->resize(m);
  CUDA_CHECK(cudaMemcpyAsync(H->data(), I.H.get() + I.nets[i].sq_off, m * m * sizeof(double),
                             cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaMemcpyAsync(g->data(), I.g.get() + I.nets[i].vec_off, m * sizeof(double),
                             cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
}

// Cholesky factorization and solve of each listed network's damped system (A, step), grouped
// by size: cusolverDnDpotrfBatched + cusolverDnDpotrsBatched per size, or, for sizes of at
// least opt.potrf_loop_min, one cusolverDnDpotrf/potrs per matrix spread over streams.
void CudaBackend::Impl::factorize(const std::vector<int>& list, std::vector<int>& h_info) {
  const int count = static_cast<int>(list.size());
  std::vector<int> sizes(count);
  for (int j = 0; j < count; ++j) sizes[j] = stage_e[list[j]] - stage_b[list[j]];
  const auto groups = group_by_size(sizes);
  // Pointer arrays, group by group: A pointers then step pointers.
  std::vector<double*> hp(2 * static_cast<std::size_t>(count));
  std::vector<int> order;  // call positions in group order
  order.reserve(count);
  for (const auto& grp : groups)
    for (int j : grp.second) order.push_back(j);
  for (int q = 0; q < count; ++q) {
    const DevNet& nd = nets[list[order[q]]];
    hp[q] = A.get() + nd.sq_off;
    hp[count + q] = step.get() + nd.vec_off;
  }
  ptrs.upload(hp.data(), hp.size(), stream);
  info.reserve(count);
  // potrs reports only illegal arguments; one slot per matrix so that no two calls share one.
  potrs_info.reserve(count);
  CUDA_CHECK(cudaMemsetAsync(potrs_info.get(), 0, count * sizeof(int), stream));
  // The looped sizes' workspace, reserved before anything is enqueued on the loop streams.
  int lwork = 0;
  for (std::size_t gi = 0, q = 0; gi < groups.size(); q += groups[gi].second.size(), ++gi) {
    const int m = groups[gi].first;
    if (opt.potrf_loop_min > 0 && m >= opt.potrf_loop_min) {
      int lw = 0;
      CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(loop_solvers[0], CUBLAS_FILL_MODE_LOWER, m, hp[q], m, &lw));
      lwork = std::max(lwork, lw);
    }
  }
  if (lwork > 0)
    for (auto& w : loop_work) w.reserve(lwork);
  CUDA_CHECK(cudaEventRecord(ev_a, stream));
  int q0 = 0;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const int m = groups[gi].first;
    const int batch = static_cast<int>(groups[gi].second.size());
    if (opt.potrf_loop_min > 0 && m >= opt.potrf_loop_min) {
      CUDA_CHECK(cudaEventRecord(ev_join, stream));
      for (int s = 0; s < kLoopStreams; ++s) CUDA_CHECK(cudaStreamWaitEvent(loop_streams[s], ev_join, 0));
      for (int b = 0; b < batch; ++b) {
        const int s = b % kLoopStreams;
        CUSOLVER_CHECK(cusolverDnDpotrf(loop_solvers[s], CUBLAS_FILL_MODE_LOWER, m, hp[q0 + b], m,
                                        loop_work[s].get(), lwork, info.get() + q0 + b));
        // potrs on a failed factorization yields garbage that the info check discards.
        CUSOLVER_CHECK(cusolverDnDpotrs(loop_solvers[s], CUBLAS_FILL_MODE_LOWER, m, 1, hp[q0 + b], m,
                                        hp[count + q0 + b], m, potrs_info.get() + q0 + b));
      }
      for (int s = 0; s < kLoopStreams; ++s) {
        CUDA_CHECK(cudaEventRecord(ev_join, loop_streams[s]));
        CUDA_CHECK(cudaStreamWaitEvent(stream, ev_join, 0));
      }
    } else {
      CUSOLVER_CHECK(cusolverDnDpotrfBatched(solver, CUBLAS_FILL_MODE_LOWER, m, ptrs.get() + q0, m,
                                             info.get() + q0, batch));
      CUSOLVER_CHECK(cusolverDnDpotrsBatched(solver, CUBLAS_FILL_MODE_LOWER, m, 1, ptrs.get() + q0, m,
                                             ptrs.get() + count + q0, m, potrs_info.get() + q0,
                                             batch));
    }
    stats.factor_flops += batch * std::pow(double(m), 3) / 3.0;
    stats.factorizations += batch;
    q0 += batch;
  }
  CUDA_CHECK(cudaEventRecord(ev_b, stream));
  std::vector<int> by_group(count), ps(count);
  CUDA_CHECK(cudaMemcpyAsync(by_group.data(), info.get(), count * sizeof(int), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaMemcpyAsync(ps.data(), potrs_info.get(), ps.size() * sizeof(int), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, ev_a, ev_b));
  stats.factor_seconds += ms * 1e-3;
  for (int v : ps)
    if (v < 0) throw std::logic_error("cusolverDnDpotrs: illegal argument " + std::to_string(-v));
  h_info.assign(count, 0);
  for (int q = 0; q < count; ++q) {
    if (by_group[q] < 0)
      throw std::logic_error("cusolverDnDpotrf: illegal argument " + std::to_string(-by_group[q]));
    h_info[order[q]] = by_group[q];
  }
}

void CudaBackend::solve(const std::vector<int>& list, const double* lambda, bool damp_values,
                        int* info, double* gdotp) {
  Impl& I = *impl_;
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  I.upload_calls(list);
  I.coef.upload(lambda, count, I.stream);
  build_damped(I.calls.get(), count, I.d_nets.get(), I.H.get(), I.g.get(), I.scale.get(),
               I.coef.get(), I.theta.get(), damp_values, I.A.get(), I.step.get(), I.stream);
  std::vector<int> h_info;
  I.factorize(list, h_info);
  finish_step(I.calls.get(), count, I.d_nets.get(), I.g.get(), I.scale.get(), I.step.get(),
              I.per_call.get(), I.stream);
  CUDA_CHECK(cudaMemcpyAsync(gdotp, I.per_call.get(), count * sizeof(double), cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
  for (int j = 0; j < count; ++j) {
    info[j] = h_info[j];
    if (info[j] != 0) gdotp[j] = NAN;
  }
  I.charge(list, now() - t0);
}

void CudaBackend::trial_losses(const std::vector<int>& list, const double* alpha, int n_alpha,
                               double* loss) {
  Impl& I = *impl_;
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0 || n_alpha == 0) return;
  if (n_alpha > kMaxAlpha)
    throw std::logic_error("trial_losses: at most " + std::to_string(kMaxAlpha) + " trial steps per pass");
  I.upload_calls(list);
  I.coef.upload(alpha, n_alpha, I.stream);
  make_trials(I.calls.get(), count, I.d_nets.get(), I.theta.get(), I.step.get(), I.coef.get(),
              n_alpha, I.trial.get(), I.stream);
  const long long wp = I.build_work(count, WorkKind::kPointTiles, I.train_sets.get());
  I.partial.reserve(wp * n_alpha);
  squared_errors(I.calls.get(), count, I.work_off.get(), wp, I.d_nets.get(), I.train_sets.get(),
                 I.trial.get(), kMaxAlpha, n_alpha, I.partial.get(), I.stream);
  std::vector<double> sse;
  I.segmented_sums(count, wp, n_alpha, sse);
  for (int j = 0; j < count; ++j)
    for (int t = 0; t < n_alpha; ++t)
      loss[static_cast<std::size_t>(j) * n_alpha + t] = sse[static_cast<std::size_t>(t) * count + j] / I.n_train[list[j]];
  I.charge(list, now() - t0);
}

void CudaBackend::apply_step(const std::vector<int>& list, const double* alpha) {
  Impl& I = *impl_;
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  I.upload_calls(list);
  I.coef.upload(alpha, count, I.stream);
  gs::apply_step(I.calls.get(), count, I.d_nets.get(), I.step.get(), I.coef.get(), I.theta.get(), I.stream);
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
  I.charge(list, now() - t0);
}

void CudaBackend::rmse(double* train, double* test) {
  Impl& I = *impl_;
  const int count = static_cast<int>(I.nets.size());
  if (count == 0) return;
  std::vector<int> all(count);
  for (int i = 0; i < count; ++i) all[i] = i;
  I.upload_calls(all);
  auto run = [&](const DevSet* sets, const std::vector<int>& npts, double* out) {
    const long long wp = I.build_work(count, WorkKind::kPointTiles, sets);
    I.partial.reserve(wp);
    squared_errors(I.calls.get(), count, I.work_off.get(), wp, I.d_nets.get(), sets, I.theta.get(),
                   1, 1, I.partial.get(), I.stream);
    std::vector<double> sse;
    I.segmented_sums(count, wp, 1, sse);
    for (int i = 0; i < count; ++i) out[i] = npts[i] > 0 ? std::sqrt(sse[i] / npts[i]) : NAN;
  };
  const double t0 = now();
  run(I.train_sets.get(), I.n_train, train);
  run(I.test_sets.get(), I.n_test, test);
  I.charge(all, now() - t0);
}

void CudaBackend::network_seconds(double* seconds) {
  std::copy(impl_->seconds.begin(), impl_->seconds.end(), seconds);
}

void CudaBackend::gradient(const std::vector<int>& list, double* loss, double* grad) {
  Impl& I = *impl_;
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  for (int i : list) {
    I.stage_b[i] = 0;
    I.stage_e[i] = num_params(I.nets[i].s);
  }
  I.upload_calls(list);
  const long long wp = I.build_work(count, WorkKind::kPointTiles, I.train_sets.get());
  I.partial.reserve(wp);
  residuals(I.calls.get(), count, I.work_off.get(), wp, I.d_nets.get(), I.train_sets.get(),
            I.theta.get(), I.resid.get(), I.partial.get(), I.stream);
  std::vector<double> sse;
  I.segmented_sums(count, wp, 1, sse);
  for (int j = 0; j < count; ++j) loss[j] = sse[j] / I.n_train[list[j]];
  const long long wg = I.build_work(count, WorkKind::kParamTiles, nullptr);
  gs::gradient(I.calls.get(), count, I.work_off.get(), wg, I.d_nets.get(), I.train_sets.get(), I.theta.get(),
               I.resid.get(), I.g.get(), I.stream);
  // Network i's gradient is at its vec_off; grad packs the listed networks one after another.
  std::size_t at = 0;
  for (int i : list) {
    const int p = num_params(I.nets[i].s);
    CUDA_CHECK(cudaMemcpyAsync(grad + at, I.g.get() + I.nets[i].vec_off, p * sizeof(double),
                               cudaMemcpyDeviceToHost, I.stream));
    at += p;
  }
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
  I.charge(list, now() - t0);
}

void CudaBackend::add_params(const std::vector<int>& list, const double* delta) {
  Impl& I = *impl_;
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  // delta into step at each network's vec_off, then theta += 1 * step over all parameters.
  std::size_t at = 0;
  for (int i : list) {
    const int p = num_params(I.nets[i].s);
    I.stage_b[i] = 0;
    I.stage_e[i] = p;
    CUDA_CHECK(cudaMemcpyAsync(I.step.get() + I.nets[i].vec_off, delta + at, p * sizeof(double),
                               cudaMemcpyHostToDevice, I.stream));
    at += p;
  }
  I.upload_calls(list);
  const std::vector<double> ones(count, 1.0);
  I.coef.upload(ones.data(), count, I.stream);
  gs::apply_step(I.calls.get(), count, I.d_nets.get(), I.step.get(), I.coef.get(), I.theta.get(), I.stream);
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
}

void CudaBackend::set_params(const std::vector<int>& list, const double* values) {
  Impl& I = *impl_;
  std::size_t at = 0;
  for (int i : list) {
    const int p = num_params(I.nets[i].s);
    CUDA_CHECK(cudaMemcpyAsync(I.theta.get() + I.nets[i].theta_off, values + at, p * sizeof(double),
                               cudaMemcpyHostToDevice, I.stream));
    at += p;
  }
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
}

const CudaStats& CudaBackend::stats() const { return impl_->stats; }
void CudaBackend::reset_stats() { impl_->stats = CudaStats{}; }

}  // namespace gs
