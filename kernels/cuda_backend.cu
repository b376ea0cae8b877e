// CudaBackend: device buffers, work lists planned on the host (cuda_plan.h), segmented loss
// sums (CUB), and the cuSOLVER Cholesky by size group through a reused scratch buffer.
//
// Stream rules: everything runs in order on `stream`, except the looped Cholesky. Each
// scratch round forks the loop streams from `stream` after its damped matrices are built, and
// joins them back before the next round reuses the scratch: one join per round, and one round
// when the scratch holds every matrix of the solve. The host synchronizes once per public
// operation, where it reads the results back (losses, info, step products), so that the wall
// time of an operation can be charged to the networks it acted on.
#include "cuda_backend.h"

#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cub/device/device_segmented_reduce.cuh>
#include <numeric>
#include <utility>
#include <stdexcept>

#include "batch_kernels.h"
#include "var_pro_kernels.h"
#include "cuda_check.h"
#include "cuda_owners.h"
#include "host_copies.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/host_solver.h"
#include "gpusweep/util/util.h"
#include "worklist.h"

extern "C" void openblas_set_num_threads(int num_threads);

#ifndef GPUSWEEP_CUDA_ARCHS
#define GPUSWEEP_CUDA_ARCHS "unknown"
#endif

namespace gs {

static_assert(static_cast<int>(WorkItems::kPointTiles) == static_cast<int>(WorkKind::kPointTiles) &&
                  static_cast<int>(WorkItems::kParamTiles) == static_cast<int>(WorkKind::kParamTiles) &&
                  static_cast<int>(WorkItems::kHessianTiles) == static_cast<int>(WorkKind::kHessianTiles) &&
                  static_cast<int>(WorkItems::kNeurons) == static_cast<int>(WorkKind::kNeurons) &&
                  static_cast<int>(WorkItems::kNeuronsAndBias) == static_cast<int>(WorkKind::kNeuronsAndBias),
              "the host work lists follow count_work's kinds");
static_assert(kMaxAlpha == 8, "cuda_bytes_per_network counts 8 trial steps");

namespace {

// Does nothing: cudaFuncGetAttributes on it tells whether the binary holds an image the
// current device can run.
__global__ void image_probe_kernel() {}

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
  void upload(HostCopies& copies, const T* h, std::size_t n, cudaStream_t s) {
    reserve(n);
    copies.to_device(p_, h, n * sizeof(T), s);
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

// One stream of the looped Cholesky, with its own handle and workspace. Members are released
// in reverse order: the handle before the stream it is bound to.
struct Lane {
  Stream stream;
  Solver solver;
  Params params;
  DeviceBuffer<char> work;
  std::vector<char> host_work;
  std::size_t work_bytes = 0, host_bytes = 0;
  double load = 0.0;  // m^3 given to it in the current solve
};

// Copies each entry's m x m block of H (at src[k]) to the scratch (at dst[k]), one thread
// per scratch double of the round; dst holds the round's n entries, increasing, from 0.
// Padding between the blocks is left alone.
struct GatherCopy {
  const double* H;
  double* scratch;
  const long long* dst;
  const long long* src;
  const long long* m;
  int n;
  __device__ void operator()(long long d) const {
    const int k = find_segment(dst, n, d);
    const long long local = d - dst[k];
    if (local < m[k] * m[k]) scratch[d] = H[src[k] + local];
  }
};

// Slot of size m^3 work assigned next: the least loaded lane.
int least_loaded(const std::vector<Lane>& lanes) {
  int best = 0;
  for (int s = 1; s < static_cast<int>(lanes.size()); ++s)
    if (lanes[s].load < lanes[best].load) best = s;
  return best;
}

// The largest matrix whose workspace the backend queries and reserves at creation (larger
// looped matrices grow it when they come).
constexpr int kWorkspaceRefSize = 2048;

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

bool cuda_kernel_image(int device, std::string* why) {
  int old = 0;
  CUDA_CHECK(cudaGetDevice(&old));
  CUDA_CHECK(cudaSetDevice(device));
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, image_probe_kernel);
  cudaGetLastError();  // a missing image is not sticky; clear it
  cudaDeviceProp prop{};
  const cudaError_t pe = cudaGetDeviceProperties(&prop, device);
  CUDA_CHECK(cudaSetDevice(old));
  CUDA_CHECK(pe);
  if (e == cudaSuccess) return true;
  if (why)
    *why = "GPU " + std::to_string(device) + " (" + prop.name + ", sm_" + std::to_string(prop.major) +
           std::to_string(prop.minor) + ") cannot run this binary's kernels, built for CUDA architectures " +
           GPUSWEEP_CUDA_ARCHS + " (" + cudaGetErrorString(e) + "); rebuild with -DGPUSWEEP_CUDA_ARCH=" +
           std::to_string(prop.major) + std::to_string(prop.minor);
  return false;
}

struct CudaBackend::Impl {
  CudaOptions opt;
  int device = 0;
  std::string name;
  CudaMemory mem;
  std::size_t free_at_start = 0;
  CudaStats stats;
  HostCopies copies;  // every copy between the host and the device
  // Declared before the buffers and handles that use them, so released after them.
  Stream stream;
  Solver solver;
  Blas blas;  // the J^T J of Jacobian rows by grouped GEMM (jtj_gemm)
  std::vector<Lane> lanes;
  Event ev_a, ev_b, ev_c, ev_d, ev_fork, ev_join;
  std::vector<std::pair<Event, Event>> round_events;  // fork and join of each scratch round

  // Host mirror of the batch.
  std::vector<DevNet> nets;
  std::vector<int> stage_b, stage_e, n_train, n_test;
  // Per network: its last assembly was of all its parameters (the ALL stage). stage_b and
  // stage_e are also set by the operations that act on all parameters without assembling.
  std::vector<char> assembled_all;
  std::vector<char> diag_only;  // the last assembly built only H's diagonal
  std::vector<char> fast;  // relu on 1D data: the relu1d assembly
  std::vector<double> seconds;
  long long total_params = 0;

  // Device arrays.
  std::vector<DeviceBuffer<double>> data;  // per dataset: x_train, y_train, x_test, y_test, prefix sums
  DeviceBuffer<DevSet> train_sets, test_sets;
  DeviceBuffer<DevNet> d_nets, fnets;  // fnets: the solve's networks with sq_off into the scratch
  DeviceBuffer<double> theta, H, scratch, g, step, scale, trial, resid, partial, sums, per_call;
  DeviceBuffer<double> coef;  // damping per call, or the line search's trial lengths
  DeviceBuffer<double> cols, rmom;  // relu1d: column polynomials, moments of r x^j
  DeviceBuffer<int> colnrn, range;  // relu1d: owner of each column, active ranges
  DeviceBuffer<CallNet> calls;      // the call lists of one operation, back to back
  DeviceBuffer<long long> offs;     // its work lists' offsets and segment boundaries, back to back
  DeviceBuffer<long long> gather;   // the solve's scratch offsets, H offsets and sizes
  DeviceBuffer<char> cub_temp;
  DeviceBuffer<int> info, potrs_info;
  DeviceBuffer<double*> ptrs;
  DeviceBuffer<double*> gemm_ptrs;  // jtj_gemm: each row group's A (row blocks) then C (H) pointers

  // Host staging of the uploads above.
  std::vector<CallNet> h_calls;
  std::vector<long long> h_offs;

  // The solver's host half (host_solver.h) and its host copies: parameters at theta_off,
  // steps and var_pro_trial's parameters at vec_off, gradients and scales at vec_off.
  HostSolver host;
  HostVarPro var_pro;  // the reduced systems and residuals kept per network
  int host_threads = 1;
  std::vector<HostSolver::Workspace> host_ws;
  // The variable-projection systems and steps of relu 1D networks on the device
  // (var_pro_kernels.h), for one group of networks at a time.
  Params vp_params;
  DeviceBuffer<double> vp_B, vp_S, vp_A, vp_U, vp_V, vp_L, vp_T, vp_W, vp_tau, vp_gr, vp_Z, vp_E, vp_runrest, vp_cpoly;
  DeviceBuffer<double> vp_reals, vp_model;
  DeviceBuffer<int> vp_cols, vp_cown, vp_perm, vp_bounds, vp_runrow, vp_nrange, vp_ints;
  DeviceBuffer<unsigned char> vp_global;
  DeviceBuffer<CallNet> vp_calls, vp_calls2;
  DeviceBuffer<VarProSlot> vp_slots, vp_slots2;
  DeviceBuffer<char> vp_ws;
  std::vector<char> vp_kept;         // per network: its system is in the buffers
  std::vector<int> vp_kept_list;     // those networks
  std::vector<VarProSlot> vp_slot_of;  // per kept network: its slot
  std::vector<int> vp_mode;          // per kept network: ReducedSystem::Mode of its factorization
  std::vector<std::size_t> device_var_pro(const std::vector<int>& list, const std::vector<std::size_t>& pos,
                                          const double* lambda, int* info, StepModel* model);
  // The trials of variable projection on the device (var_pro_kernels.h): parameters in vp_trial
  // (theta's layout), the linear columns' compressed system in vp_X, the least-squares system in
  // vp_B, the least-norm scratch in vp_Zt.
  DeviceBuffer<double> vp_trial, vp_X, vp_cnorm, vp_Zt;
  DeviceBuffer<int> vp_tcols, vp_ord;
  DeviceBuffer<long long> vp_offs;  // per call: column_classes' output offsets, or the trial's Z offsets
  DeviceBuffer<Role> vp_role;             // column_classes' scratch (vec_off)
  DeviceBuffer<unsigned char> vp_classes;  // its output, packed
  DeviceBuffer<double*> vp_ptrs;           // pointer arrays: grouped GEMMs, batched solves and factorizations
  std::vector<char> trial_on_host;  // per network: its last trial was the host's (in h_trial)
  // Variable-projection systems and trials made on host threads since creation (host_transfers;
  // the same as CudaStats' until reset_stats).
  long long host_systems = 0, host_trials = 0;
  std::vector<std::size_t> device_trial(const std::vector<int>& list, const std::vector<std::size_t>& pos,
                                        bool take_step, const double* alpha, double* loss);
  // The scratch of compress_relu1d and of the main QR (var_pro_kernels.h) for a group laid out
  // by lay, of cols columns in all.
  void reserve_compression(const VarProLayout& lay, std::size_t cols) {
    vp_tau.reserve(lay.tau);
    vp_cpoly.reserve(cols * kColCoef);
    vp_cown.reserve(cols);
    vp_perm.reserve(cols);
    vp_global.reserve(cols);
    vp_bounds.reserve(lay.run);
    vp_runrow.reserve(lay.run);
    vp_nrange.reserve(lay.run);
    vp_runrest.reserve(lay.run);
  }
  // The networks of list that the host half takes: at the positions on_host and back (those the
  // device sent back), merged in list order into on_host; counted in both counters.
  std::vector<int> host_share(const std::vector<int>& list, std::vector<std::size_t>& on_host,
                              const std::vector<std::size_t>& back, long long& stat, long long& total) {
    on_host.insert(on_host.end(), back.begin(), back.end());
    std::sort(on_host.begin(), on_host.end());
    std::vector<int> nets;
    for (std::size_t j : on_host) nets.push_back(list[j]);
    stat += static_cast<long long>(nets.size());
    total += static_cast<long long>(nets.size());
    return nets;
  }
  // The residuals at theta and a relu 1D network's moments (relu1d_neurons), as assemble makes
  // them, for the listed networks; sets resid_ok.
  void refresh_residuals(const std::vector<int>& list);
  long long total_vec = 0;
  std::vector<double> h_theta, h_step, h_trial, h_scale, h_H;
  // Per network: whether its host copy above holds what the device holds now (h_theta its
  // parameters, h_step its whole step, h_scale its Jacobi scale). Every operation that writes
  // one of these on the device clears the flag, and a copy to the host or the host's own
  // value sent to the device sets it; the solver's host half then copies only what it lacks.
  std::vector<char> theta_held, step_held, scale_held;
  // Per network: whether the device's residuals (and a relu 1D network's moments) are those of
  // its present parameters: set by assemble, cleared by every change of the parameters.
  std::vector<char> resid_ok;
  // Network i's parameters changed (other than by var_pro_accept).
  void moved(int i) {
    var_pro.moved(i);
    resid_ok[i] = 0;
    vp_kept[i] = 0;
  }
  void drop(std::vector<char>& held, const std::vector<int>& list) {
    for (int i : list) held[i] = 0;
  }
  // The listed networks whose flag is clear (their copies to make), flags then set.
  std::vector<int> missing(std::vector<char>& held, const std::vector<int>& list) {
    std::vector<int> out;
    for (int i : list)
      if (!held[i]) {
        out.push_back(i);
        held[i] = 1;
      }
    return out;
  }

  // Per-network copies between the device arrays and host buffers go through a packed
  // device buffer: one gather or scatter kernel and one transfer, however many networks.
  DeviceBuffer<double> pack;
  DeviceBuffer<long long> segs;  // device offsets, packed offsets, lengths (copy_segments)
  std::vector<double> h_pack;
  std::vector<long long> h_segs;

  // Sends the segments of the listed networks (dev_off(i), len(i) doubles); returns their
  // packed total.
  template <class DevOff, class Len>
  long long stage_segments(const std::vector<int>& list, DevOff dev_off, Len len) {
    const std::size_t n = list.size();
    h_segs.resize(3 * n);
    long long total = 0;
    for (std::size_t j = 0; j < n; ++j) {
      h_segs[j] = dev_off(list[j]);
      h_segs[n + j] = total;
      h_segs[2 * n + j] = len(list[j]);
      total += len(list[j]);
    }
    segs.upload(copies, h_segs.data(), h_segs.size(), stream.get());
    return total;
  }
  // Copies len(i) doubles of each listed network from dev + dev_off(i) to host_buf +
  // host_off(i), and waits for them.
  template <class DevOff, class HostOff, class Len>
  void copy_out(const std::vector<int>& list, const double* dev, DevOff dev_off, double* host_buf, HostOff host_off,
                Len len) {
    if (list.empty()) return;
    const long long total = stage_segments(list, dev_off, len);
    if (total == 0) return;
    pack.reserve(total);
    copy_segments(segs.get(), static_cast<int>(list.size()), dev, pack.get(), true, stream.get());
    h_pack.resize(total);
    copies.to_host(h_pack.data(), pack.get(), total * sizeof(double), stream.get());
    CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    for (std::size_t j = 0; j < list.size(); ++j)
      std::copy_n(h_pack.data() + h_segs[list.size() + j], h_segs[2 * list.size() + j], host_buf + host_off(list[j]));
  }
  // Copies len(i) doubles of each listed network from host_buf + host_off(i) to dev +
  // dev_off(i), in order on the stream; host_buf may change once it returns.
  template <class DevOff, class HostOff, class Len>
  void copy_in(const std::vector<int>& list, const double* host_buf, HostOff host_off, double* dev, DevOff dev_off,
               Len len) {
    if (list.empty()) return;
    const long long total = stage_segments(list, dev_off, len);
    if (total == 0) return;
    h_pack.resize(total);
    for (std::size_t j = 0; j < list.size(); ++j)
      std::copy_n(host_buf + host_off(list[j]), h_segs[2 * list.size() + j], h_pack.data() + h_segs[list.size() + j]);
    // From pageable memory: the call returns once h_pack has been read.
    pack.upload(copies, h_pack.data(), total, stream.get());
    copy_segments(segs.get(), static_cast<int>(list.size()), pack.get(), dev, false, stream.get());
  }
  // C += alpha A A^T (C = alpha A A^T when beta is 0) for each problem of the cuBLAS groups
  // g (stage size m[g], gsize[g] problems, alpha[g]): A the m x rows Jacobian rows of a
  // network (column-major, leading dimension m: its row-major J), C its H.
  void gemm_jtj(const std::vector<int>& m, const std::vector<int>& gsize, const std::vector<double>& alpha, int rows,
                double beta, double* const* a, double* const* c) {
    const int groups = static_cast<int>(m.size());
    const std::vector<cublasOperation_t> ta(groups, CUBLAS_OP_N), tb(groups, CUBLAS_OP_T);
    const std::vector<int> k(groups, rows);
    const std::vector<double> b(groups, beta);
    CUBLAS_CHECK(cublasDgemmGroupedBatched(blas.get(), ta.data(), tb.data(), m.data(), m.data(), k.data(),
                                           alpha.data(), a, m.data(), a, m.data(), b.data(), c, m.data(), groups,
                                           gsize.data()));
  }
  // Per network of the batch, where the listed ones start when their parameters are packed in
  // list order (Backend::gradient's layout).
  std::vector<long long> packed_at(const std::vector<int>& list) const {
    std::vector<long long> at(nets.size(), 0);
    long long total = 0;
    for (int i : list) {
      at[i] = total;
      total += params_of(i);
    }
    return at;
  }
  long long theta_at(int i) const { return nets[i].theta_off; }
  long long vec_at(int i) const { return nets[i].vec_off; }
  int params_of(int i) const { return num_params(nets[i].s); }
  int stage_of(int i) const { return stage_e[i] - stage_b[i]; }

  // Appends list's calls to h_calls; returns where they start.
  std::size_t add_calls(const std::vector<int>& list) {
    const std::size_t at = h_calls.size();
    for (int i : list) h_calls.push_back({i, stage_b[i], stage_e[i]});
    return at;
  }
  // Appends v to h_offs; returns where it starts.
  std::size_t add_offs(const std::vector<long long>& v) {
    const std::size_t at = h_offs.size();
    h_offs.insert(h_offs.end(), v.begin(), v.end());
    return at;
  }
  // The work list of kind over list's calls, on the training or the test points.
  std::vector<long long> work_list(const std::vector<int>& list, WorkItems kind, bool test = false) const {
    std::vector<CallShape> shapes(list.size());
    for (std::size_t j = 0; j < list.size(); ++j) {
      const int i = list[j];
      shapes[j] = {stage_e[i] - stage_b[i], nets[i].s.n, test ? n_test[i] : n_train[i]};
    }
    return work_offsets(shapes, kind);
  }
  // Sends the staged call lists and offsets in two copies.
  void upload_staged() {
    calls.upload(copies, h_calls.data(), h_calls.size(), stream.get());
    offs.upload(copies, h_offs.data(), h_offs.size(), stream.get());
  }
  const CallNet* call_at(std::size_t k) const { return calls.get() + k; }
  const long long* off_at(std::size_t k) const { return offs.get() + k; }

  // out[s] = sum of in over segment s = [seg[s], seg[s + 1]), segments of them; no sync.
  void segmented_sum(const double* in, const long long* seg, int segments, double* out) {
    if (segments == 0) return;
    std::size_t bytes = 0;
    CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(nullptr, bytes, in, out, segments, seg, seg + 1, stream.get()));
    // Never a null pointer: CUB takes a null d_temp_storage for another size query.
    cub_temp.reserve(std::max<std::size_t>(bytes, 1));
    CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(cub_temp.get(), bytes, in, out, segments, seg, seg + 1, stream.get()));
  }

  // Charges the wall time of one operation to its networks, in proportion to m^2 (the
  // assembly and factorization work that dominates each of them).
  void charge(const std::vector<int>& list, double secs) {
    double total = 0.0;
    for (int i : list) total += std::pow(double(stage_e[i] - stage_b[i]) + 1.0, 2);
    if (total <= 0.0) return;
    for (int i : list) seconds[i] += secs * std::pow(double(stage_e[i] - stage_b[i]) + 1.0, 2) / total;
  }

  // Device bytes of cusolverDnXpotrf's workspace for an m x m matrix, on the device and on
  // the host.
  void potrf_workspace(int m, std::size_t* dev, std::size_t* host) {
    *dev = *host = 0;
    CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(lanes[0].solver.get(), lanes[0].params.get(), CUBLAS_FILL_MODE_LOWER,
                                               m, CUDA_R_64F, scratch_probe.get(), m, CUDA_R_64F, dev, host));
  }
  void reserve_workspace(std::size_t dev, std::size_t host) {
    for (auto& l : lanes) {
      if (dev > l.work_bytes) {
        l.work.reserve(dev);
        l.work_bytes = dev;
      }
      if (host > l.host_bytes) {
        l.host_work.resize(host);
        l.host_bytes = host;
      }
    }
  }
  DeviceBuffer<double> scratch_probe;  // a valid pointer for the workspace queries

  void enqueue_factorization(const std::vector<int>& list, const double* lambda, FactorPlan* plan);
};

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

CudaBackend::CudaBackend(const CudaOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  I.opt = options;
  if (options.jacobian_rows < 0) throw std::invalid_argument("CudaOptions: jacobian_rows must not be negative");
  I.host_threads = thread_count(options.host_threads);
  I.host_ws.resize(I.host_threads);
  // The host solver's parallelism is over networks, as the CPU backend's: each LAPACK call
  // runs on its caller's thread (OpenBLAS's own threads would spin against them).
  openblas_set_num_threads(1);
  if (options.loop_streams < 1) throw std::invalid_argument("CudaOptions: loop_streams must be at least 1");
  if (options.cholesky.rules.empty()) throw std::invalid_argument("CudaOptions: empty Cholesky table");
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0) throw std::runtime_error("--device cuda: no CUDA device is visible (" + why + ")");
  if (options.device < 0 || options.device >= n)
    throw std::runtime_error("--device cuda: device " + std::to_string(options.device) +
                             " does not exist (" + std::to_string(n) + " visible)");
  I.device = options.device;
  if (!cuda_kernel_image(I.device, &why)) throw std::runtime_error("--device cuda: " + why);
  CUDA_CHECK(cudaSetDevice(I.device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, I.device));
  I.stream = make_stream();
  I.solver = make_solver(I.stream.get());
  I.blas = make_blas();
  CUBLAS_CHECK(cublasSetStream(I.blas.get(), I.stream.get()));
  I.vp_params = make_params();
  I.lanes.resize(options.loop_streams);
  for (auto& l : I.lanes) {
    l.stream = make_stream();
    l.solver = make_solver(l.stream.get());
    l.params = make_params();
  }
  I.ev_a = make_event(cudaEventDefault);
  I.ev_b = make_event(cudaEventDefault);
  I.ev_c = make_event(cudaEventDefault);
  I.ev_d = make_event(cudaEventDefault);
  I.ev_fork = make_event(cudaEventDisableTiming);
  I.ev_join = make_event(cudaEventDisableTiming);
  // The looped Cholesky's workspaces for matrices up to kWorkspaceRefSize count in the plan
  // and are reserved at once (larger looped matrices grow them when they come).
  I.scratch_probe.reserve(1);
  std::size_t dev = 0, host = 0;
  I.potrf_workspace(kWorkspaceRefSize, &dev, &host);
  std::size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  I.free_at_start = free_b;
  I.mem = cuda_memory_plan(free_b, options.memory_fraction, options.scratch_bytes, dev * I.lanes.size());
  I.reserve_workspace(dev, host);
  char buf[320];
  std::snprintf(buf, sizeof buf, "cuda (%s, sm_%d%d, %.1f GiB, cuSOLVER Cholesky: %s)", prop.name, prop.major,
                prop.minor, total_b / 1073741824.0, cholesky_text(options.cholesky).c_str());
  I.name = buf;
}

CudaBackend::~CudaBackend() = default;

std::string CudaBackend::describe() const { return impl_->name; }

std::size_t CudaBackend::bytes_per_network(int p, int num_points) const {
  return cuda_bytes_per_network(p, num_points, impl_->mem.scratch);
}

std::size_t CudaBackend::memory_budget() const { return impl_->mem.networks; }

int CudaBackend::max_chunk_networks() const { return impl_->opt.max_chunk_networks; }

const CudaMemory& CudaBackend::memory() const { return impl_->mem; }

void CudaBackend::load(const Batch& batch) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const int n = batch.size();
  I.nets.resize(n);
  I.stage_b.assign(n, 0);
  I.stage_e.assign(n, 0);
  I.assembled_all.assign(n, 0);
  I.diag_only.assign(n, 0);
  I.n_train.resize(n);
  I.n_test.resize(n);
  I.seconds.assign(n, 0.0);
  I.fast.resize(n);
  std::vector<int> ps(n);
  for (int i = 0; i < n; ++i) ps[i] = num_params(batch.nets[i].shape);
  const std::vector<long long> sq = matrix_offsets(ps);
  long long vec = 0, res = 0, nrn = 0, largest = 0;
  for (int i = 0; i < n; ++i) {
    const NetDesc& nd = batch.nets[i];
    I.nets[i] = DevNet{nd.shape, nd.dataset, static_cast<long long>(nd.offset), sq[i], vec, res, nrn};
    I.fast[i] = relu1d_fast_path(nd.shape);
    vec += ps[i];
    nrn += nd.shape.n + 1;
    largest = std::max(largest, padded_square(ps[i]));
    I.n_train[i] = batch.datasets[nd.dataset]->n_train();
    I.n_test[i] = batch.datasets[nd.dataset]->n_test();
    res += I.n_train[i];
  }
  I.total_params = static_cast<long long>(batch.params.size());
  I.total_vec = vec;
  I.host.load(batch);
  I.var_pro.load(n);
  I.h_trial.assign(vec, NAN);  // no trial before var_pro_trial: accepting one installs NaN
  I.h_theta = batch.params;  // what theta receives below
  I.h_step.assign(vec, 0.0);
  I.h_scale.assign(vec, 0.0);
  I.theta_held.assign(n, 1);
  I.resid_ok.assign(n, 0);
  I.vp_kept.assign(n, 0);
  I.vp_kept_list.clear();
  I.vp_slot_of.assign(n, VarProSlot{});
  I.vp_mode.assign(n, ReducedSystem::kUnknown);
  I.trial_on_host.assign(n, 0);
  I.vp_trial.reserve(I.total_params);
  // No trial before var_pro_trial: accepting one installs NaN (all bits set).
  CUDA_CHECK(cudaMemsetAsync(I.vp_trial.get(), 0xFF, I.vp_trial.size() * sizeof(double), st));
  I.step_held.assign(n, 0);
  I.scale_held.assign(n, 0);
  const int nd = static_cast<int>(batch.datasets.size());
  I.data.clear();
  I.data.resize(5 * nd);
  std::vector<DevSet> tr(nd), te(nd);
  for (int k = 0; k < nd; ++k) {
    const Dataset& ds = *batch.datasets[k];
    const int npts = ds.n_train();
    if (ds.d == 1) {
      // Sorted by x (as the host solver sorts them), with the prefix sums of x^j, for the
      // relu1d assembly. The order of the points changes no sum but the rounding of the losses.
      const HostSolver::Sorted& so = I.host.sorted(k);
      I.data[5 * k + 0].upload(I.copies, so.x.data(), so.x.size(), st);
      I.data[5 * k + 1].upload(I.copies, so.y.data(), so.y.size(), st);
      I.data[5 * k + 4].upload(I.copies, so.pre.data(), so.pre.size(), st);
    } else {
      I.data[5 * k + 0].upload(I.copies, ds.x_train.data(), ds.x_train.size(), st);
      I.data[5 * k + 1].upload(I.copies, ds.y_train.data(), ds.y_train.size(), st);
    }
    I.data[5 * k + 2].upload(I.copies, ds.x_test.data(), ds.x_test.size(), st);
    I.data[5 * k + 3].upload(I.copies, ds.y_test.data(), ds.y_test.size(), st);
    tr[k] = DevSet{I.data[5 * k].get(), I.data[5 * k + 1].get(), npts, ds.d == 1 ? I.data[5 * k + 4].get() : nullptr,
                   ds.d == 1 ? ds.lo[0] : 0.0, ds.d == 1 ? ds.hi[0] : 0.0};
    te[k] = DevSet{I.data[5 * k + 2].get(), I.data[5 * k + 3].get(), ds.n_test(), nullptr};
  }
  I.train_sets.upload(I.copies, tr.data(), nd, st);
  I.test_sets.upload(I.copies, te.data(), nd, st);
  I.d_nets.upload(I.copies, I.nets.data(), n, st);
  I.theta.upload(I.copies, batch.params.data(), batch.params.size(), st);
  I.H.reserve(sq.back());
  // The scratch holds the damped copies of one round: all of the batch's matrices when they
  // fit in the planned scratch, and at least the largest one.
  const long long planned = static_cast<long long>(I.mem.scratch / sizeof(double));
  I.scratch.reserve(std::max(largest, std::min(planned, sq.back())));
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
  CUDA_CHECK(cudaStreamSynchronize(st));
}

void CudaBackend::read_params(std::vector<double>& params) {
  Impl& I = *impl_;
  params.resize(I.total_params);
  I.copies.to_host(params.data(), I.theta.get(), params.size() * sizeof(double), I.stream.get());
  CUDA_CHECK(cudaStreamSynchronize(I.stream.get()));
  I.h_theta = params;
  std::fill(I.theta_held.begin(), I.theta_held.end(), 1);
}

void CudaBackend::assemble(const std::vector<int>& list, Block stage, HessianKind kind,
                           double* loss, double* scaled_grad) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  bool nonlinear = false;
  for (int i : list) {
    const Shape& s = I.nets[i].s;
    stage_range(s, stage, &I.stage_b[i], &I.stage_e[i]);
    I.assembled_all[i] = I.stage_b[i] == 0 && I.stage_e[i] == I.params_of(i);
    nonlinear = nonlinear || !stage_is_linear(s.arch, stage);
  }
  std::vector<int> fast, slow;
  for (int i : list) (I.fast[i] ? fast : slow).push_back(i);
  const bool curvature = kind == HessianKind::kExact && nonlinear;
  // A relu 1D network's kDiagonal assembly writes only H's diagonal (read_system shows zeros
  // elsewhere; solve refuses it); the other networks' assemblies are full whatever the kind.
  const bool diagonal = kind == HessianKind::kDiagonal;
  for (int i : list) I.diag_only[i] = diagonal && I.fast[i];
  const int cs = static_cast<int>(slow.size()), cf = static_cast<int>(fast.size());

  // Every work list from the sizes on the host, sent in two copies.
  I.h_calls.clear();
  I.h_offs.clear();
  const std::size_t c_all = I.add_calls(list), c_slow = I.add_calls(slow), c_fast = I.add_calls(fast);
  const auto pts = I.work_list(list, WorkItems::kPointTiles);
  const std::size_t o_pts = I.add_offs(pts);  // also the boundaries of the loss sums
  std::vector<long long> wk(7, 0);
  std::size_t o[7] = {};
  const WorkItems slow_kinds[3] = {WorkItems::kParamTiles, WorkItems::kHessianTiles, WorkItems::kNeurons};
  const WorkItems fast_kinds[4] = {WorkItems::kNeuronsAndBias, WorkItems::kParamTiles, WorkItems::kHessianTiles,
                                   WorkItems::kNeurons};
  const int rows = I.opt.jacobian_rows;  // 0: hessian_tiles
  for (int k = 0; k < 3; ++k) {
    if (cs == 0 || (k == 2 && !curvature) || (k == 1 && rows > 0)) continue;
    const auto w = I.work_list(slow, slow_kinds[k]);
    wk[k] = w.back();
    o[k] = I.add_offs(w);
  }
  for (int k = 0; k < 4; ++k) {
    if (cf == 0 || (k == 3 && !curvature) || (k == 2 && diagonal)) continue;
    const auto w = I.work_list(fast, fast_kinds[k]);
    wk[3 + k] = w.back();
    o[3 + k] = I.add_offs(w);
  }
  // The general J^T J from Jacobian rows: the slow calls in consecutive groups whose rows of
  // one chunk of points fit in the scratch, each with its own tile work list and row offsets.
  struct RowGroup {
    int first, count, max_neurons, max_points;
    std::size_t tiles, j_off;
    long long work;
    // jtj_gemm: cuBLAS groups of the same stage size and point count, their problems at
    // gemm_ptrs[ptr_at ...] (A pointers, then as many C pointers).
    std::vector<int> gm, gsize;
    std::vector<double> galpha;
    std::size_t ptr_at = 0;
  };
  std::vector<double*> h_gemm_ptrs;
  std::vector<RowGroup> groups;
  if (cs > 0 && rows > 0) {
    long long widest = 0;
    for (int i : slow) widest = std::max<long long>(widest, I.stage_e[i] - I.stage_b[i]);
    I.scratch.reserve(static_cast<std::size_t>(widest) * rows);
    long long cap = static_cast<long long>(I.scratch.size());
    if (I.opt.jacobian_group_bytes > 0)
      cap = std::min(cap, static_cast<long long>(I.opt.jacobian_group_bytes / sizeof(double)));
    for (int a = 0; a < cs;) {
      RowGroup gr{a, 0, 0, 0, 0, 0, 0};
      std::vector<long long> joff;
      long long used = 0;
      std::vector<int> members;
      while (a < cs) {
        const int i = slow[a];
        const long long need = static_cast<long long>(I.stage_e[i] - I.stage_b[i]) * rows;
        if (!members.empty() && used + need > cap) break;
        joff.push_back(used);
        used += need;
        members.push_back(i);
        gr.max_neurons = std::max(gr.max_neurons, I.nets[i].s.n);
        gr.max_points = std::max(gr.max_points, I.n_train[i]);
        ++a;
      }
      gr.count = static_cast<int>(members.size());
      if (I.opt.jtj_gemm) {
        std::vector<int> order(members.size());
        std::iota(order.begin(), order.end(), 0);
        auto key = [&](int q) { return std::make_pair(I.stage_of(members[q]), I.n_train[members[q]]); };
        std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return key(x) < key(y); });
        gr.ptr_at = h_gemm_ptrs.size();
        for (std::size_t q = 0; q < order.size(); ++q) {
          if (q == 0 || key(order[q]) != key(order[q - 1])) {
            gr.gm.push_back(key(order[q]).first);
            gr.galpha.push_back(2.0 / key(order[q]).second);
            gr.gsize.push_back(0);
          }
          ++gr.gsize.back();
          h_gemm_ptrs.push_back(I.scratch.get() + joff[order[q]]);
        }
        for (int q : order) h_gemm_ptrs.push_back(I.H.get() + I.nets[members[q]].sq_off);
      }
      const auto w = I.work_list(members, WorkItems::kHessianTiles);
      gr.work = w.back();
      gr.tiles = I.add_offs(w);
      gr.j_off = I.add_offs(joff);
      groups.push_back(gr);
    }
  }
  I.upload_staged();
  if (!h_gemm_ptrs.empty()) I.gemm_ptrs.upload(I.copies, h_gemm_ptrs.data(), h_gemm_ptrs.size(), st);
  const CallNet* cl = I.call_at(c_all);

  // Residuals and losses.
  const long long wp = pts.back();
  I.partial.reserve(wp);
  I.sums.reserve(count);
  residuals(cl, count, I.off_at(o_pts), wp, I.d_nets.get(), I.train_sets.get(), I.theta.get(), I.resid.get(),
            I.partial.get(), st);
  I.segmented_sum(I.partial.get(), I.off_at(o_pts), count, I.sums.get());

  CUDA_CHECK(cudaEventRecord(I.ev_a.get(), st));
  if (cs > 0) {
    // The general assembly: J^T J tiles over every point, gradient and curvature per point.
    const CallNet* cls = I.call_at(c_slow);
    gs::gradient(cls, cs, I.off_at(o[0]), wk[0], I.d_nets.get(), I.train_sets.get(), I.theta.get(), I.resid.get(),
                 I.g.get(), st);
    if (rows > 0) {
      for (const RowGroup& gr : groups)
        for (int p0 = 0; p0 == 0 || p0 < gr.max_points; p0 += rows) {
          jacobian_rows(cls + gr.first, gr.count, I.off_at(gr.j_off), gr.max_neurons, I.d_nets.get(),
                        I.train_sets.get(), I.theta.get(), p0, rows, I.scratch.get(), st);
          if (I.opt.jtj_gemm)
            I.gemm_jtj(gr.gm, gr.gsize, gr.galpha, rows, p0 == 0 ? 0.0 : 1.0, I.gemm_ptrs.get() + gr.ptr_at,
                       I.gemm_ptrs.get() + gr.ptr_at + gr.count);
          else
            hessian_rows(cls + gr.first, gr.count, I.off_at(gr.tiles), gr.work, I.off_at(gr.j_off), I.d_nets.get(),
                         I.train_sets.get(), I.scratch.get(), p0, rows, I.H.get(), st);
        }
    } else {
      hessian_tiles(cls, cs, I.off_at(o[1]), wk[1], I.d_nets.get(), I.train_sets.get(), I.theta.get(), I.H.get(),
                    st);
    }
    if (curvature)
      add_curvature(cls, cs, I.off_at(o[2]), wk[2], I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                    I.resid.get(), I.H.get(), st);
    for (int i : slow) {
      const double m = I.stage_e[i] - I.stage_b[i];
      I.stats.assemble_flops += m * (m + 1.0) * I.n_train[i];
    }
  }
  CUDA_CHECK(cudaEventRecord(I.ev_b.get(), st));
  if (cf > 0) {
    // relu on 1D data: moments and Hankel forms (relu1d.h), timed separately.
    const CallNet* clf = I.call_at(c_fast);
    CUDA_CHECK(cudaEventRecord(I.ev_c.get(), st));
    relu1d_neurons(clf, cf, I.off_at(o[3]), wk[3], I.d_nets.get(), I.train_sets.get(), I.theta.get(), I.resid.get(),
                   I.range.get(), I.rmom.get(), st);
    relu1d_gradient(clf, cf, I.off_at(o[4]), wk[4], I.d_nets.get(), I.train_sets.get(), I.theta.get(), I.rmom.get(),
                    I.cols.get(), I.colnrn.get(), I.g.get(), st);
    if (diagonal)
      relu1d_hessian_diag(clf, cf, I.off_at(o[4]), wk[4], I.d_nets.get(), I.train_sets.get(), I.cols.get(),
                          I.colnrn.get(), I.range.get(), I.H.get(), st);
    else
      relu1d_hessian(clf, cf, I.off_at(o[5]), wk[5], I.d_nets.get(), I.train_sets.get(), I.cols.get(),
                     I.colnrn.get(), I.range.get(), I.H.get(), st);
    if (curvature)
      relu1d_curvature(clf, cf, I.off_at(o[6]), wk[6], I.d_nets.get(), I.train_sets.get(), I.theta.get(),
                       I.range.get(), I.rmom.get(), I.H.get(), st);
    CUDA_CHECK(cudaEventRecord(I.ev_d.get(), st));
    for (int i : fast) {
      const double m = I.stage_e[i] - I.stage_b[i];
      I.stats.relu1d_entries += diagonal ? m : m * (m + 1.0) / 2.0;
    }
  }

  jacobi_scale(cl, count, I.d_nets.get(), I.H.get(), I.g.get(), I.scale.get(), I.per_call.get(), st);
  I.drop(I.scale_held, list);
  for (int i : list) {
    I.var_pro.assembled(i);
    I.resid_ok[i] = 1;
    I.vp_kept[i] = 0;
  }
  std::vector<double> sse(count);
  I.copies.to_host(sse.data(), I.sums.get(), count * sizeof(double), st);
  I.copies.to_host(scaled_grad, I.per_call.get(), count * sizeof(double), st);
  CUDA_CHECK(cudaStreamSynchronize(st));
  for (int j = 0; j < count; ++j) loss[j] = sse[j] / I.n_train[list[j]];
  float ms = 0.0f;
  if (cs > 0) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, I.ev_a.get(), I.ev_b.get()));
    I.stats.assemble_seconds += ms * 1e-3;
  }
  if (cf > 0) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, I.ev_c.get(), I.ev_d.get()));
    I.stats.relu1d_seconds += ms * 1e-3;
  }
  I.charge(list, now() - t0);
}

void CudaBackend::read_system(int i, std::vector<double>* H, std::vector<double>* g) {
  Impl& I = *impl_;
  const std::size_t m = I.stage_e[i] - I.stage_b[i];
  H->resize(m * m);
  g->resize(m);
  I.copies.to_host(H->data(), I.H.get() + I.nets[i].sq_off, m * m * sizeof(double), I.stream.get());
  I.copies.to_host(g->data(), I.g.get() + I.nets[i].vec_off, m * sizeof(double), I.stream.get());
  CUDA_CHECK(cudaStreamSynchronize(I.stream.get()));
  if (I.diag_only[i])
    for (std::size_t c = 0; c < m; ++c)
      for (std::size_t r = 0; r < m; ++r)
        if (r != c) (*H)[r + c * m] = 0.0;
}

// Enqueues the damped systems of the listed networks and their Cholesky factorizations and
// solves (into step), by the plan's rounds: per round, copy each H into the scratch, damp it
// there (build_damped in place: each entry is read and written by the same thread), fork the
// loop streams, factorize each size group by its path, join. info and potrs_info get one
// slot per plan entry. Nothing is read back here.
void CudaBackend::Impl::enqueue_factorization(const std::vector<int>& list, const double* lambda,
                                              FactorPlan* plan_out) {
  cudaStream_t st = stream.get();
  const int count = static_cast<int>(list.size());
  std::vector<int> sizes(count);
  std::vector<long long> src(count);
  for (int j = 0; j < count; ++j) {
    sizes[j] = stage_e[list[j]] - stage_b[list[j]];
    src[j] = nets[list[j]].sq_off;
  }
  FactorPlan& plan = *plan_out;
  plan = plan_factorization(sizes, src, static_cast<long long>(scratch.size()), opt.cholesky);

  // Per entry: its network with sq_off in the scratch, its call, its damping, its pointers.
  std::vector<DevNet> fn(count);
  std::vector<CallNet> fc(count);
  std::vector<double> lam(count);
  std::vector<long long> gat(3 * static_cast<std::size_t>(count));
  std::vector<double*> hp(2 * static_cast<std::size_t>(count));
  for (int q = 0; q < count; ++q) {
    const FactorEntry& e = plan.entries[q];
    const int i = list[e.call];
    fn[q] = nets[i];
    fn[q].sq_off = e.dst;
    fc[q] = {q, stage_b[i], stage_e[i]};
    lam[q] = lambda[e.call];
    gat[q] = e.dst;
    gat[count + q] = e.src;
    gat[2 * count + q] = e.m;
    hp[q] = scratch.get() + e.dst;
    hp[count + q] = step.get() + nets[i].vec_off;
  }
  fnets.upload(copies, fn.data(), fn.size(), st);
  calls.upload(copies, fc.data(), fc.size(), st);
  coef.upload(copies, lam.data(), lam.size(), st);
  gather.upload(copies, gat.data(), gat.size(), st);
  ptrs.upload(copies, hp.data(), hp.size(), st);
  info.reserve(count);
  // potrs reports only illegal arguments; one slot per matrix so that no two calls share one.
  potrs_info.reserve(count);
  CUDA_CHECK(cudaMemsetAsync(info.get(), 0, count * sizeof(int), st));
  CUDA_CHECK(cudaMemsetAsync(potrs_info.get(), 0, count * sizeof(int), st));

  // The looped sizes' workspace, reserved before anything is enqueued on the loop streams.
  std::size_t ws = 0, hs = 0;
  for (const auto& r : plan.rounds)
    for (const auto& grp : r.groups)
      if (grp.path == CholeskyPath::kLooped) {
        std::size_t d = 0, h = 0;
        potrf_workspace(grp.m, &d, &h);
        ws = std::max(ws, d);
        hs = std::max(hs, h);
      }
  reserve_workspace(ws, hs);
  for (auto& l : lanes) l.load = 0.0;
  while (round_events.size() < plan.rounds.size())
    round_events.emplace_back(make_event(cudaEventDefault), make_event(cudaEventDefault));

  for (std::size_t ri = 0; ri < plan.rounds.size(); ++ri) {
    const FactorRound& r = plan.rounds[ri];
    const int nr = r.end - r.begin;
    thrust::for_each(thrust::cuda::par_nosync.on(st), thrust::counting_iterator<long long>(0),
                     thrust::counting_iterator<long long>(r.doubles),
                     GatherCopy{H.get(), scratch.get(), gather.get() + r.begin, gather.get() + count + r.begin,
                                gather.get() + 2 * count + r.begin, nr});
    CUDA_CHECK_LAUNCH("GatherCopy");
    build_damped(calls.get() + r.begin, nr, fnets.get(), scratch.get(), g.get(), scale.get(), coef.get() + r.begin,
                 scratch.get(), step.get(), st);
    CUDA_CHECK(cudaEventRecord(round_events[ri].first.get(), st));
    bool forked = false;
    std::vector<char> used(lanes.size(), 0);
    for (const FactorGroup& grp : r.groups) {
      const int m = grp.m, nb = grp.end - grp.begin;
      if (grp.path == CholeskyPath::kBatched) {
        CUSOLVER_CHECK(cusolverDnDpotrfBatched(solver.get(), CUBLAS_FILL_MODE_LOWER, m, ptrs.get() + grp.begin, m,
                                               info.get() + grp.begin, nb));
        CUSOLVER_CHECK(cusolverDnDpotrsBatched(solver.get(), CUBLAS_FILL_MODE_LOWER, m, 1, ptrs.get() + grp.begin, m,
                                               ptrs.get() + count + grp.begin, m, potrs_info.get() + grp.begin, nb));
      } else {
        if (!forked) {
          CUDA_CHECK(cudaEventRecord(ev_fork.get(), st));
          for (auto& l : lanes) CUDA_CHECK(cudaStreamWaitEvent(l.stream.get(), ev_fork.get(), 0));
          forked = true;
        }
        for (int k = grp.begin; k < grp.end; ++k) {
          const int s = least_loaded(lanes);
          Lane& l = lanes[s];
          used[s] = 1;
          l.load += std::pow(double(m), 3);
          CUSOLVER_CHECK(cusolverDnXpotrf(l.solver.get(), l.params.get(), CUBLAS_FILL_MODE_LOWER, m, CUDA_R_64F, hp[k],
                                          m, CUDA_R_64F, l.work.get(), l.work_bytes,
                                          l.host_bytes ? l.host_work.data() : nullptr, l.host_bytes, info.get() + k));
          // potrs on a failed factorization yields garbage that the info check discards.
          CUSOLVER_CHECK(cusolverDnXpotrs(l.solver.get(), l.params.get(), CUBLAS_FILL_MODE_LOWER, m, 1, CUDA_R_64F,
                                          hp[k], m, CUDA_R_64F, hp[count + k], m, potrs_info.get() + k));
        }
        stats.looped += nb;
      }
      stats.factor_flops += nb * std::pow(double(m), 3) / 3.0;
      stats.factorizations += nb;
    }
    if (forked)
      for (std::size_t s = 0; s < lanes.size(); ++s) {
        if (!used[s]) continue;
        CUDA_CHECK(cudaEventRecord(ev_join.get(), lanes[s].stream.get()));
        CUDA_CHECK(cudaStreamWaitEvent(st, ev_join.get(), 0));
      }
    CUDA_CHECK(cudaEventRecord(round_events[ri].second.get(), st));
  }
  stats.rounds += static_cast<long long>(plan.rounds.size());
}

void CudaBackend::solve(const std::vector<int>& list, const double* lambda, int* info, double* gdotp) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  for (int i : list)
    if (I.diag_only[i]) throw std::logic_error("solve: the last assembly built only the Hessian's diagonal");
  FactorPlan plan;
  I.enqueue_factorization(list, lambda, &plan);
  I.drop(I.step_held, list);
  // finish_step takes the calls in list order; the factorization's calls are in plan order.
  I.h_calls.clear();
  I.add_calls(list);
  I.calls.upload(I.copies, I.h_calls.data(), I.h_calls.size(), st);
  finish_step(I.calls.get(), count, I.d_nets.get(), I.g.get(), I.scale.get(), I.step.get(), I.per_call.get(), st);
  std::vector<int> by_entry(count), ps(count);
  I.copies.to_host(by_entry.data(), I.info.get(), count * sizeof(int), st);
  I.copies.to_host(ps.data(), I.potrs_info.get(), count * sizeof(int), st);
  I.copies.to_host(gdotp, I.per_call.get(), count * sizeof(double), st);
  CUDA_CHECK(cudaStreamSynchronize(st));
  for (std::size_t ri = 0; ri < plan.rounds.size(); ++ri) {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, I.round_events[ri].first.get(), I.round_events[ri].second.get()));
    I.stats.factor_seconds += ms * 1e-3;
  }
  for (int v : ps)
    if (v < 0) throw std::logic_error("cuSOLVER potrs: illegal argument " + std::to_string(-v));
  for (int q = 0; q < count; ++q) {
    if (by_entry[q] < 0) throw std::logic_error("cuSOLVER potrf: illegal argument " + std::to_string(-by_entry[q]));
    const int j = plan.entries[q].call;
    info[j] = by_entry[q];
    if (info[j] != 0) gdotp[j] = NAN;
  }
  I.charge(list, now() - t0);
}

void CudaBackend::trial_losses(const std::vector<int>& list, const double* alpha, int n_alpha,
                               double* loss) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0 || n_alpha == 0) return;
  if (n_alpha > kMaxAlpha)
    throw std::logic_error("trial_losses: at most " + std::to_string(kMaxAlpha) + " trial steps per pass");
  I.h_calls.clear();
  I.h_offs.clear();
  I.add_calls(list);
  const auto pts = I.work_list(list, WorkItems::kPointTiles);
  const std::size_t o_pts = I.add_offs(pts);
  const std::size_t o_seg = I.add_offs(segment_offsets(pts, n_alpha));
  I.upload_staged();
  I.coef.upload(I.copies, alpha, n_alpha, st);
  const long long wp = pts.back();
  make_trials(I.calls.get(), count, I.d_nets.get(), I.theta.get(), I.step.get(), I.coef.get(), n_alpha, I.trial.get(),
              st);
  I.partial.reserve(wp * n_alpha);
  I.sums.reserve(static_cast<std::size_t>(count) * n_alpha);
  squared_errors(I.calls.get(), count, I.off_at(o_pts), wp, I.d_nets.get(), I.train_sets.get(), I.trial.get(),
                 kMaxAlpha, n_alpha, I.partial.get(), st);
  I.segmented_sum(I.partial.get(), I.off_at(o_seg), count * n_alpha, I.sums.get());
  std::vector<double> sse(static_cast<std::size_t>(count) * n_alpha);
  I.copies.to_host(sse.data(), I.sums.get(), sse.size() * sizeof(double), st);
  CUDA_CHECK(cudaStreamSynchronize(st));
  for (int j = 0; j < count; ++j)
    for (int t = 0; t < n_alpha; ++t)
      loss[static_cast<std::size_t>(j) * n_alpha + t] = sse[static_cast<std::size_t>(t) * count + j] / I.n_train[list[j]];
  I.charge(list, now() - t0);
}

void CudaBackend::apply_step(const std::vector<int>& list, const double* alpha) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  I.h_calls.clear();
  I.add_calls(list);
  I.calls.upload(I.copies, I.h_calls.data(), I.h_calls.size(), st);
  I.coef.upload(I.copies, alpha, count, st);
  gs::apply_step(I.calls.get(), count, I.d_nets.get(), I.step.get(), I.coef.get(), I.theta.get(), st);
  I.drop(I.theta_held, list);
  for (int i : list) I.moved(i);
  CUDA_CHECK(cudaStreamSynchronize(st));
  I.charge(list, now() - t0);
}

void CudaBackend::rmse(double* train, double* test) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const int count = static_cast<int>(I.nets.size());
  if (count == 0) return;
  const double t0 = now();
  std::vector<int> all(count);
  std::iota(all.begin(), all.end(), 0);
  I.h_calls.clear();
  I.h_offs.clear();
  I.add_calls(all);
  const auto wtr = I.work_list(all, WorkItems::kPointTiles, false);
  const auto wte = I.work_list(all, WorkItems::kPointTiles, true);
  const std::size_t o_tr = I.add_offs(wtr), o_te = I.add_offs(wte);
  I.upload_staged();
  // Both sets in flight at once: the test set's partial sums and sums follow the training set's.
  const long long ntr = wtr.back(), nte = wte.back();
  I.partial.reserve(ntr + nte);
  I.sums.reserve(2 * static_cast<std::size_t>(count));
  squared_errors(I.calls.get(), count, I.off_at(o_tr), ntr, I.d_nets.get(), I.train_sets.get(), I.theta.get(), 1, 1,
                 I.partial.get(), st);
  squared_errors(I.calls.get(), count, I.off_at(o_te), nte, I.d_nets.get(), I.test_sets.get(), I.theta.get(), 1, 1,
                 I.partial.get() + ntr, st);
  I.segmented_sum(I.partial.get(), I.off_at(o_tr), count, I.sums.get());
  I.segmented_sum(I.partial.get() + ntr, I.off_at(o_te), count, I.sums.get() + count);
  std::vector<double> sse(2 * static_cast<std::size_t>(count));
  I.copies.to_host(sse.data(), I.sums.get(), sse.size() * sizeof(double), st);
  CUDA_CHECK(cudaStreamSynchronize(st));
  for (int i = 0; i < count; ++i) {
    train[i] = I.n_train[i] > 0 ? std::sqrt(sse[i] / I.n_train[i]) : NAN;
    test[i] = I.n_test[i] > 0 ? std::sqrt(sse[count + i] / I.n_test[i]) : NAN;
  }
  I.charge(all, now() - t0);
}

void CudaBackend::network_seconds(double* seconds) {
  std::copy(impl_->seconds.begin(), impl_->seconds.end(), seconds);
}

void CudaBackend::gradient(const std::vector<int>& list, double* loss, double* grad) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const double t0 = now();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  for (int i : list) {
    I.stage_b[i] = 0;
    I.stage_e[i] = num_params(I.nets[i].s);
  }
  I.h_calls.clear();
  I.h_offs.clear();
  I.add_calls(list);
  const auto pts = I.work_list(list, WorkItems::kPointTiles);
  const auto par = I.work_list(list, WorkItems::kParamTiles);
  const std::size_t o_pts = I.add_offs(pts), o_par = I.add_offs(par);
  I.upload_staged();
  const long long wp = pts.back();
  I.partial.reserve(wp);
  I.sums.reserve(count);
  residuals(I.calls.get(), count, I.off_at(o_pts), wp, I.d_nets.get(), I.train_sets.get(), I.theta.get(),
            I.resid.get(), I.partial.get(), st);
  I.segmented_sum(I.partial.get(), I.off_at(o_pts), count, I.sums.get());
  gs::gradient(I.calls.get(), count, I.off_at(o_par), par.back(), I.d_nets.get(), I.train_sets.get(), I.theta.get(),
               I.resid.get(), I.g.get(), st);
  // Network i's gradient is at its vec_off; grad packs the listed networks one after another.
  const std::vector<long long> packed = I.packed_at(list);
  auto params = [&](int i) { return I.params_of(i); };
  I.copy_out(list, I.g.get(), [&](int i) { return I.vec_at(i); }, grad, [&](int i) { return packed[i]; }, params);
  std::vector<double> sse(count);
  I.copies.to_host(sse.data(), I.sums.get(), count * sizeof(double), st);
  CUDA_CHECK(cudaStreamSynchronize(st));
  for (int j = 0; j < count; ++j) loss[j] = sse[j] / I.n_train[list[j]];
  I.charge(list, now() - t0);
}

void CudaBackend::add_params(const std::vector<int>& list, const double* delta) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  // delta into step at each network's vec_off, then theta += 1 * step over all parameters.
  for (int i : list) {
    I.stage_b[i] = 0;
    I.stage_e[i] = I.params_of(i);
  }
  const std::vector<long long> packed = I.packed_at(list);
  I.copy_in(
      list, delta, [&](int i) { return packed[i]; }, I.step.get(), [&](int i) { return I.vec_at(i); },
      [&](int i) { return I.params_of(i); });
  I.h_calls.clear();
  I.add_calls(list);
  I.calls.upload(I.copies, I.h_calls.data(), I.h_calls.size(), st);
  const std::vector<double> ones(count, 1.0);
  I.coef.upload(I.copies, ones.data(), count, st);
  gs::apply_step(I.calls.get(), count, I.d_nets.get(), I.step.get(), I.coef.get(), I.theta.get(), st);
  I.drop(I.theta_held, list);
  I.drop(I.step_held, list);
  for (int i : list) I.moved(i);
  CUDA_CHECK(cudaStreamSynchronize(st));
}

void CudaBackend::set_params(const std::vector<int>& list, const double* values) {
  Impl& I = *impl_;
  cudaStream_t st = I.stream.get();
  const std::vector<long long> packed = I.packed_at(list);
  I.copy_in(
      list, values, [&](int i) { return packed[i]; }, I.theta.get(), [&](int i) { return I.theta_at(i); },
      [&](int i) { return I.params_of(i); });
  for (int i : list) {
    std::copy_n(values + packed[i], I.params_of(i), I.h_theta.data() + I.theta_at(i));
    I.theta_held[i] = 1;
    I.moved(i);
  }
  CUDA_CHECK(cudaStreamSynchronize(st));
}

// The solver's host half. Each operation copies what the host needs of the listed networks,
// runs host_solver.h on host threads, and copies the results back: one math with the CPU
// backend. Variable projection copies the Hessians back in groups of at most
// host_system_bytes.

void CudaBackend::least_squares(const std::vector<int>& list, Block stage, int* rank, double* loss) {
  Impl& I = *impl_;
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  const double t0 = now();
  for (int i : list) {
    stage_range(I.nets[i].s, stage, &I.stage_b[i], &I.stage_e[i]);
    I.assembled_all[i] = 0;  // a variable-projection solve needs an assembly after this
  }
  auto theta_at = [&](int i) { return I.theta_at(i); };
  auto vec_at = [&](int i) { return I.vec_at(i); };
  I.copy_out(I.missing(I.theta_held, list), I.theta.get(), theta_at, I.h_theta.data(), theta_at,
             [&](int i) { return I.params_of(i); });
  parallel_for(count, I.host_threads, [&](int j, int t) {
    const int i = list[j];
    rank[j] = I.host.stage_step(i, I.h_theta.data() + I.theta_at(i), I.stage_b[i], I.stage_e[i],
                                I.h_step.data() + I.vec_at(i), &loss[j], I.host_ws[t]);
  });
  I.copy_in(list, I.h_step.data(), vec_at, I.step.get(), vec_at, [&](int i) { return I.stage_of(i); });
  I.drop(I.step_held, list);  // only the stage's part of the step was sent
  CUDA_CHECK(cudaStreamSynchronize(I.stream.get()));
  const double secs = now() - t0;
  I.stats.host_seconds += secs;
  I.charge(list, secs);
}

// The reduced systems and steps of the listed relu 1D networks (at positions pos of the
// caller's list) on the device (var_pro_kernels.h), in groups of at most device_system_bytes;
// returns the positions of those left to the host: without a nonlinear column (a zero step),
// or with linear columns the device found dependent (counted in stats). The systems of the
// last group built stay in the buffers: a damping retry of one of them (vp_kept) solves it
// again, with its factorization or eigenvectors, without building it.
std::vector<std::size_t> CudaBackend::Impl::device_var_pro(const std::vector<int>& list,
                                                           const std::vector<std::size_t>& pos,
                                                           const double* lambda, int* info, StepModel* model) {
  std::vector<std::size_t> back;
  cudaStream_t st = stream.get();
  // Solves the systems of the listed slots (entries at positions at of the caller's list).
  auto solve = [&](const std::vector<CallNet>& calls, const std::vector<VarProSlot>& slots,
                   const std::vector<std::size_t>& at) {
    const int c2 = static_cast<int>(calls.size());
    if (c2 == 0) return;
    int max_kb = 1;
    std::vector<double> lam(c2);
    std::vector<int> mode(c2);
    for (int q = 0; q < c2; ++q) {
      max_kb = std::max(max_kb, slots[q].m - slots[q].kc);
      lam[q] = lambda[at[q]];
      mode[q] = vp_mode[calls[q].net];
    }
    vp_calls2.upload(copies, calls.data(), calls.size(), st);
    vp_slots2.upload(copies, slots.data(), slots.size(), st);
    vp_model.reserve(4 * static_cast<std::size_t>(c2));
    vp_ints.reserve(6 * static_cast<std::size_t>(c2));
    vp_ptrs.reserve(2 * static_cast<std::size_t>(c2));
    const std::size_t ws = solve_workspace_bytes(solver.get(), vp_params.get(), max_kb);
    if (ws > vp_ws.size()) throw std::logic_error("device_var_pro: the workspace of the kept systems is too small");
    const SolveWork sw{vp_V.get(),     vp_L.get(),  vp_E.get(),          vp_Z.get(),
                       vp_model.get(), vp_ints.get(), vp_ints.get() + 3 * c2, vp_ws.get(),
                       vp_ws.size(),   vp_ptrs.get(), vp_ints.get() + 4 * c2};
    std::vector<int> sinfo;
    std::vector<StepModel> smodel;
    ReducedCholeskyCounts counts;
    reduced_solves(st, copies, solver.get(), vp_params.get(), opt.cholesky, vp_calls2.get(), c2, vp_slots2.get(),
                   slots, d_nets.get(), vp_cols.get(), scale.get(), vp_A.get(), vp_gr.get(), sw, lam, &mode, &sinfo,
                   &smodel, step.get(), &counts);
    stats.reduced_factorizations += counts.factorizations;
    stats.reduced_looped += counts.looped;
    // The step stays on the device, where the trial reads it (the host copies it if it
    // takes the trial).
    for (int q = 0; q < c2; ++q) {
      const int i = calls[q].net;
      step_held[i] = 0;
      vp_mode[i] = mode[q];
      info[at[q]] = sinfo[q];
      model[at[q]] = smodel[q];
    }
  };
  // The columns of the systems to build (column_classes): one byte per parameter.
  std::vector<int> fresh_nets;
  for (std::size_t j : pos)
    if (!vp_kept[list[j]]) fresh_nets.push_back(list[j]);
  std::vector<long long> class_at(fresh_nets.size() + 1, 0);
  for (std::size_t q = 0; q < fresh_nets.size(); ++q) class_at[q + 1] = class_at[q] + params_of(fresh_nets[q]);
  std::vector<unsigned char> classes(class_at.back());
  if (!fresh_nets.empty()) {
    std::vector<CallNet> cc;
    for (int i : fresh_nets) cc.push_back(CallNet{i, 0, params_of(i)});
    vp_calls.upload(copies, cc.data(), cc.size(), st);
    vp_offs.upload(copies, class_at.data(), class_at.size(), st);
    vp_role.reserve(total_vec);
    vp_classes.reserve(classes.size());
    column_classes(vp_calls.get(), static_cast<int>(cc.size()), d_nets.get(), train_sets.get(), theta.get(),
                   scale.get(), vp_role.get(), vp_offs.get(), vp_classes.get(), st);
    copies.to_host(classes.data(), vp_classes.get(), classes.size(), st);
    CUDA_CHECK(cudaStreamSynchronize(st));
  }
  std::vector<long long> classes_of(nets.size(), -1);
  for (std::size_t q = 0; q < fresh_nets.size(); ++q) classes_of[fresh_nets[q]] = class_at[q];
  // The kept systems first: building a group overwrites them.
  std::vector<std::size_t> fresh;
  std::vector<CallNet> kcalls;
  std::vector<VarProSlot> kslots;
  std::vector<std::size_t> kat;
  for (std::size_t j : pos) {
    const int i = list[j];
    if (!vp_kept[i]) {
      fresh.push_back(j);
      continue;
    }
    kcalls.push_back(CallNet{i, 0, params_of(i)});
    kslots.push_back(vp_slot_of[i]);
    kat.push_back(j);
  }
  solve(kcalls, kslots, kat);
  stats.kept_systems += static_cast<long long>(kcalls.size());
  std::size_t first = 0;
  while (first < fresh.size()) {
    // One group: its columns (var_pro.h, column_classes) and layout.
    std::vector<VarProSlot> slots;
    std::vector<CallNet> calls;
    std::vector<int> cols;
    std::vector<std::size_t> at;
    VarProLayout lay;
    std::size_t bytes = 0;
    int max_kb = 1;
    for (; first < fresh.size(); ++first) {
      const int i = list[fresh[first]];
      const Shape& sh = nets[i].s;
      const int p = params_of(i);
      VarProColumns c;
      columns_of_classes(classes.data() + classes_of[i], p, &c);
      const std::vector<int> all = c.all();
      const int m = static_cast<int>(all.size()), kc = static_cast<int>(c.lin.size()), kb = m - kc;
      if (kb == 0) {
        // No nonlinear column: reduced_solve's answer, a zero step with no model.
        CUDA_CHECK(cudaMemsetAsync(step.get() + vec_at(i), 0, sizeof(double) * p, st));
        step_held[i] = 0;
        info[fresh[first]] = 0;
        model[fresh[first]] = StepModel{};
        continue;
      }
      const int ldb = compress_rows_bound(sh, n_train[i]);
      // B, S, A U V L, T (and tau), W, gr Z E, the columns' scratch and the runs' (ints
      // counted as doubles).
      const double entries = static_cast<double>(ldb) * (m + 1) + static_cast<double>(m) * kb + 4.0 * kb * kb +
                             (m + 1.0) * (kb + 2) + static_cast<double>(kc) * kb + 4.0 * kb + (kColCoef + 4.0) * m +
                             4.0 * compress_scratch(sh) + 16.0;
      const std::size_t need = static_cast<std::size_t>(entries * sizeof(double));
      if (!slots.empty() && bytes + need > opt.device_system_bytes) break;
      bytes += need;
      slots.push_back(lay.add(sh, m, kc, c.global, ldb));
      calls.push_back(CallNet{i, 0, p});
      cols.insert(cols.end(), all.begin(), all.end());
      at.push_back(fresh[first]);
      max_kb = std::max(max_kb, kb);
    }
    const int count = static_cast<int>(slots.size());
    if (count == 0) continue;
    // Building the group overwrites the kept systems.
    for (int i : vp_kept_list) vp_kept[i] = 0;
    vp_kept_list.clear();
    vp_B.reserve(lay.b);
    vp_S.reserve(lay.s);
    vp_A.reserve(lay.a);
    vp_U.reserve(lay.a);
    vp_V.reserve(lay.a);
    vp_L.reserve(lay.a);
    vp_T.reserve(lay.t);
    vp_W.reserve(lay.w);
    vp_gr.reserve(lay.gr);
    vp_Z.reserve(lay.gr);
    vp_E.reserve(lay.e);
    reserve_compression(lay, cols.size());
    vp_calls.upload(copies, calls.data(), calls.size(), st);
    vp_slots.upload(copies, slots.data(), slots.size(), st);
    vp_cols.upload(copies, cols.data(), cols.size(), st);
    // Per call: the rows, rank, dependent flag and QR info (then the solve's flags, infos and
    // the order of its batched factorizations: 6 per call).
    vp_ints.reserve(6 * static_cast<std::size_t>(count));
    vp_reals.reserve(count);  // per call: the compression's rest
    const std::size_t ws = std::max(reduced_workspace_bytes(solver.get(), vp_params.get(), slots),
                                    solve_workspace_bytes(solver.get(), vp_params.get(), max_kb));
    vp_ws.reserve(ws);
    // [B | h], S, then A and gr.
    int* ints = vp_ints.get();
    const Compressed cmp{vp_cols.get(), vp_B.get(),      vp_B.get(),       ints,           vp_reals.get(),
                         vp_global.get(), vp_cpoly.get(), vp_cown.get(),   vp_bounds.get(), vp_runrow.get(),
                         vp_nrange.get(), vp_runrest.get()};
    compress_relu1d(vp_calls.get(), count, vp_slots.get(), d_nets.get(), train_sets.get(), theta.get(), resid.get(), cmp,
                    st);
    residual_curvature(vp_calls.get(), count, vp_slots.get(), d_nets.get(), train_sets.get(), theta.get(),
                       vp_cols.get(), rmom.get(), vp_S.get(), st);
    std::vector<int> rows(count);
    copies.to_host(rows.data(), ints, count * sizeof(int), st);
    CUDA_CHECK(cudaStreamSynchronize(st));
    for (int j = 0; j < count; ++j)
      if (rows[j] > slots[j].ldb) throw std::logic_error("compress_relu1d: more rows than compress_rows_bound");
    vp_ptrs.reserve(6 * static_cast<std::size_t>(count));
    const ReducedWork rw{vp_A.get(), vp_gr.get(), vp_tau.get(), vp_T.get(), vp_W.get(), vp_U.get(), vp_perm.get(),
                         ints + count, ints + 2 * count, ints + 3 * count, ints, vp_ws.get(), ws, vp_ptrs.get()};
    std::vector<int> rank, deficient;
    reduced_systems(st, copies, solver.get(), vp_params.get(), blas.get(), vp_calls.get(), count, vp_slots.get(),
                    slots, rows, d_nets.get(), train_sets.get(), vp_cols.get(), scale.get(), vp_B.get(), vp_S.get(), rw,
                    &rank, &deficient);
    // The steps of the others, whose systems the buffers keep until the next group.
    std::vector<CallNet> calls2;
    std::vector<VarProSlot> slots2;
    std::vector<std::size_t> at2;
    for (int q = 0; q < count; ++q) {
      if (deficient[q]) {
        back.push_back(at[q]);
        ++stats.dependent_systems;
        continue;
      }
      const int i = calls[q].net;
      calls2.push_back(calls[q]);
      slots2.push_back(slots[q]);
      at2.push_back(at[q]);
      vp_mode[i] = ReducedSystem::kUnknown;
      vp_slot_of[i] = slots[q];
      vp_kept[i] = 1;
      vp_kept_list.push_back(i);
    }
    solve(calls2, slots2, at2);
  }
  return back;
}

void CudaBackend::var_pro_solve(const std::vector<int>& list, const double* lambda, int* info, StepModel* model) {
  Impl& I = *impl_;
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  for (int i : list)
    if (!I.assembled_all[i]) throw std::logic_error("var_pro_solve: the last assembly was not of the ALL stage");
  const double t0 = now();
  cudaStream_t st = I.stream.get();
  auto theta_at = [&](int i) { return I.theta_at(i); };
  auto vec_at = [&](int i) { return I.vec_at(i); };
  auto params = [&](int i) { return I.params_of(i); };
  // Relu networks on 1D inputs: the system and the step on the device (their residuals made
  // again where a trial replaced them); the host solves the others, and those the device sends
  // back (var_pro.h's pivoted path; no nonlinear column). A damping retry on the host
  // solves the reduced system kept from the first try (HostVarPro). The other networks'
  // Hessians come back, for a new system, in groups of at most host_system_bytes.
  std::vector<std::size_t> on_device, on_host;
  std::vector<int> stale;
  for (std::size_t j = 0; j < list.size(); ++j) {
    const int i = list[j];
    // A system the host keeps (one the device found dependent) is solved there again.
    const bool dev = I.fast[i] && I.opt.device_var_pro && !I.var_pro.has_system(i);
    (dev ? on_device : on_host).push_back(j);
    if (dev && !I.resid_ok[i] && !I.vp_kept[i]) stale.push_back(i);
  }
  const double d0 = now();
  // Residuals that a trial on the device replaced, for a system built again.
  I.refresh_residuals(stale);
  const std::vector<std::size_t> sent_back = I.device_var_pro(list, on_device, lambda, info, model);
  const double device_secs = now() - d0;
  I.stats.device_var_pro_seconds += device_secs;
  // The parameters and the scale of each network the host solves, unless it holds them already
  // (a damping retry; parameters that a trial on the host made): its system's columns come from
  // them.
  const std::vector<int> hosted = I.host_share(list, on_host, sent_back, I.stats.host_systems, I.host_systems);
  I.copy_out(I.missing(I.theta_held, hosted), I.theta.get(), theta_at, I.h_theta.data(), theta_at, params);
  I.copy_out(I.missing(I.scale_held, hosted), I.scale.get(), vec_at, I.h_scale.data(), vec_at, params);
  auto needs_hessian = [&](int i) { return !I.fast[i] && !I.var_pro.has_system(i); };
  const std::size_t cap = std::max<std::size_t>(I.opt.host_system_bytes / sizeof(double), 1);
  std::size_t first = 0;
  std::vector<int> host_list;
  while (first < on_host.size()) {
    std::vector<std::size_t> group;
    std::vector<std::size_t> at;
    std::size_t used = 0;
    for (std::size_t k = first; k < on_host.size(); ++k) {
      const int i = list[on_host[k]];
      const std::size_t p = needs_hessian(i) ? static_cast<std::size_t>(I.params_of(i)) : 0;
      if (!group.empty() && used + p * p > cap) break;
      group.push_back(on_host[k]);
      at.push_back(used);
      used += p * p;
    }
    I.h_H.resize(std::max(I.h_H.size(), used));
    for (std::size_t q = 0; q < group.size(); ++q) {
      const int i = list[group[q]];
      if (!needs_hessian(i)) continue;
      const std::size_t p = I.params_of(i);
      I.copies.to_host(I.h_H.data() + at[q], I.H.get() + I.nets[i].sq_off, p * p * sizeof(double), st);
    }
    CUDA_CHECK(cudaStreamSynchronize(st));
    parallel_for(static_cast<int>(group.size()), I.host_threads, [&](int q, int t) {
      const std::size_t j = group[q];
      const int i = list[j];
      info[j] = I.var_pro.solve(I.host, i, I.h_theta.data() + I.theta_at(i),
                                needs_hessian(i) ? I.h_H.data() + at[q] : nullptr, I.h_scale.data() + I.vec_at(i),
                                lambda[j], I.h_step.data() + I.vec_at(i), &model[j], I.host_ws[t]);
    });
    for (std::size_t j : group) host_list.push_back(list[j]);
    first += group.size();
  }
  I.copy_in(host_list, I.h_step.data(), vec_at, I.step.get(), vec_at, params);
  for (int i : host_list) I.step_held[i] = 1;
  CUDA_CHECK(cudaStreamSynchronize(st));
  const double secs = now() - t0;
  I.stats.host_seconds += secs - device_secs;
  I.charge(list, secs);
}

void CudaBackend::Impl::refresh_residuals(const std::vector<int>& list) {
  if (list.empty()) return;
  cudaStream_t st = stream.get();
  const int count = static_cast<int>(list.size());
  h_calls.clear();
  h_offs.clear();
  for (int i : list) h_calls.push_back({i, 0, params_of(i)});
  std::vector<CallShape> shapes(list.size());
  for (std::size_t j = 0; j < list.size(); ++j) shapes[j] = {params_of(list[j]), nets[list[j]].s.n, n_train[list[j]]};
  const auto pts = work_offsets(shapes, WorkItems::kPointTiles);
  const auto nrn = work_offsets(shapes, WorkItems::kNeuronsAndBias);
  const std::size_t o_pts = add_offs(pts), o_nrn = add_offs(nrn);
  upload_staged();
  partial.reserve(pts.back());
  residuals(call_at(0), count, off_at(o_pts), pts.back(), d_nets.get(), train_sets.get(), theta.get(), resid.get(),
            partial.get(), st);
  relu1d_neurons(call_at(0), count, off_at(o_nrn), nrn.back(), d_nets.get(), train_sets.get(), theta.get(),
                 resid.get(), range.get(), rmom.get(), st);
  for (int i : list) resid_ok[i] = 1;
}

std::vector<std::size_t> CudaBackend::Impl::device_trial(const std::vector<int>& list,
                                                         const std::vector<std::size_t>& pos, bool take_step,
                                                         const double* alpha, double* loss) {
  std::vector<std::size_t> back;
  cudaStream_t st = stream.get();
  std::size_t first = 0;
  while (first < pos.size()) {
    // One group: the linear columns of each network (ascending) and its slot.
    std::vector<VarProSlot> slots;
    std::vector<CallNet> cl;
    std::vector<int> cols;
    std::vector<std::size_t> at;
    std::vector<double> al;
    std::vector<CallShape> shapes;
    VarProLayout lay;
    std::size_t bytes = 0;
    for (; first < pos.size(); ++first) {
      const int i = list[pos[first]];
      const Shape& sh = nets[i].s;
      const std::vector<int> lin = linear_columns(sh);
      const int m = static_cast<int>(lin.size());
      const int ldb = compress_rows_bound(sh, n_train[i]);
      // X and M, Z (at most trial_scratch(m, 0)), the columns' and the runs' scratch.
      const double entries = 2.0 * ldb * (m + 1) + static_cast<double>(trial_scratch(m, 0)) + (kColCoef + 6.0) * m +
                             4.0 * compress_scratch(sh) + 16.0;
      const std::size_t need = static_cast<std::size_t>(entries * sizeof(double));
      if (!slots.empty() && bytes + need > opt.device_system_bytes) break;
      bytes += need;
      slots.push_back(lay.add(sh, m, m, 0, ldb));
      cl.push_back(CallNet{i, 0, params_of(i)});
      cols.insert(cols.end(), lin.begin(), lin.end());
      at.push_back(pos[first]);
      al.push_back(alpha != nullptr ? alpha[pos[first]] : 1.0);
      shapes.push_back({params_of(i), sh.n, n_train[i]});
    }
    const int count = static_cast<int>(slots.size());
    vp_X.reserve(lay.b);
    vp_B.reserve(lay.b);
    reserve_compression(lay, cols.size());
    vp_cnorm.reserve(cols.size());
    vp_ord.reserve(cols.size());
    vp_ints.reserve(4 * static_cast<std::size_t>(count));  // rows, rank, dependent flag, QR info
    vp_reals.reserve(count);
    // The same calls for the point kernels, with their work list.
    h_calls = cl;
    h_offs.clear();
    const auto pts = work_offsets(shapes, WorkItems::kPointTiles);
    const std::size_t o_pts = add_offs(pts);
    upload_staged();
    vp_calls.upload(copies, cl.data(), cl.size(), st);
    vp_slots.upload(copies, slots.data(), slots.size(), st);
    vp_tcols.upload(copies, cols.data(), cols.size(), st);
    coef.upload(copies, al.data(), al.size(), st);
    // The trial's start, its residuals, and the compressed system of its linear columns.
    start_trials(vp_calls.get(), count, d_nets.get(), train_sets.get(), theta.get(), step.get(), coef.get(), take_step,
                 vp_trial.get(), st);
    const long long wp = pts.back();
    partial.reserve(wp);
    residuals(call_at(0), count, off_at(o_pts), wp, d_nets.get(), train_sets.get(), vp_trial.get(), resid.get(),
              partial.get(), st);
    // resid now holds the residuals at the trial's start (its linear parameters not yet solved).
    for (const CallNet& c : cl) resid_ok[c.net] = 0;
    int* ints = vp_ints.get();
    const Compressed cmp{vp_tcols.get(), vp_X.get(),      vp_X.get(),       ints,           vp_reals.get(),
                         vp_global.get(), vp_cpoly.get(), vp_cown.get(),    vp_bounds.get(), vp_runrow.get(),
                         vp_nrange.get(), vp_runrest.get()};
    compress_relu1d(vp_calls.get(), count, vp_slots.get(), d_nets.get(), train_sets.get(), vp_trial.get(), resid.get(),
                    cmp, st);
    std::vector<int> rows(count);
    copies.to_host(rows.data(), ints, count * sizeof(int), st);
    CUDA_CHECK(cudaStreamSynchronize(st));
    for (int j = 0; j < count; ++j)
      if (rows[j] > slots[j].ldb) throw std::logic_error("compress_relu1d: more rows than compress_rows_bound");
    const std::size_t ws = reduced_workspace_bytes(solver.get(), vp_params.get(), slots);
    vp_ws.reserve(ws);
    vp_ptrs.reserve(2 * static_cast<std::size_t>(count));  // the triangular solves' pointer arrays
    const ReducedWork rw{nullptr, nullptr, vp_tau.get(), nullptr,     nullptr,     nullptr, vp_perm.get(),
                         ints + count, ints + 2 * count, ints + 3 * count, ints, vp_ws.get(), ws, vp_ptrs.get()};
    TrialWork tw{rw, vp_B.get(), vp_cnorm.get(), vp_ord.get(), nullptr, nullptr};
    std::vector<int> rank, deficient;
    trial_systems(st, copies, solver.get(), vp_params.get(), vp_calls.get(), count, vp_slots.get(), slots, rows,
                  d_nets.get(), train_sets.get(), vp_tcols.get(), vp_global.get(), vp_X.get(), vp_trial.get(), tw,
                  &rank, &deficient);
    std::vector<long long> zoff(count, 0);
    long long zlen = 0;
    for (int j = 0; j < count; ++j) {
      zoff[j] = zlen;
      if (!deficient[j]) zlen += trial_scratch(slots[j].m, rank[j]);
    }
    vp_Zt.reserve(std::max<long long>(zlen, 1));
    vp_offs.upload(copies, zoff.data(), zoff.size(), st);
    tw.Z = vp_Zt.get();
    tw.zoff = vp_offs.get();
    trial_solutions(st, copies, blas.get(), vp_calls.get(), count, vp_slots.get(), slots, d_nets.get(), vp_tcols.get(), tw,
                    rank, deficient, zoff, vp_trial.get());
    // The losses at the trials.
    squared_errors(call_at(0), count, off_at(o_pts), wp, d_nets.get(), train_sets.get(), vp_trial.get(), 1, 1,
                   partial.get(), st);
    sums.reserve(count);
    segmented_sum(partial.get(), off_at(o_pts), count, sums.get());
    std::vector<double> sse(count);
    copies.to_host(sse.data(), sums.get(), count * sizeof(double), st);
    CUDA_CHECK(cudaStreamSynchronize(st));
    for (int j = 0; j < count; ++j) {
      const int i = cl[j].net;
      if (deficient[j]) {
        back.push_back(at[j]);
        ++stats.dependent_trials;
        continue;
      }
      loss[at[j]] = sse[j] / n_train[i];
      trial_on_host[i] = 0;
    }
  }
  return back;
}

void CudaBackend::var_pro_trial(const std::vector<int>& list, bool take_step, double* loss, const double* alpha) {
  Impl& I = *impl_;
  const int count = static_cast<int>(list.size());
  if (count == 0) return;
  const double t0 = now();
  // Relu networks on 1D inputs on the device; the others, and those whose main linear columns
  // the device finds dependent (least_squares_values' dgelsd path), on the host.
  std::vector<std::size_t> on_device, on_host;
  for (std::size_t j = 0; j < list.size(); ++j)
    (I.fast[list[j]] && I.opt.device_var_pro ? on_device : on_host).push_back(j);
  const std::vector<std::size_t> back = I.device_trial(list, on_device, take_step, alpha, loss);
  const double device_secs = now() - t0;
  I.stats.device_var_pro_seconds += device_secs;
  const std::vector<int> hl = I.host_share(list, on_host, back, I.stats.host_trials, I.host_trials);
  if (!hl.empty()) {
    I.h_trial.resize(I.total_vec);
    auto params = [&](int i) { return I.params_of(i); };
    auto theta_at = [&](int i) { return I.theta_at(i); };
    auto vec_at = [&](int i) { return I.vec_at(i); };
    I.copy_out(I.missing(I.theta_held, hl), I.theta.get(), theta_at, I.h_theta.data(), theta_at, params);
    if (take_step) I.copy_out(I.missing(I.step_held, hl), I.step.get(), vec_at, I.h_step.data(), vec_at, params);
    parallel_for(static_cast<int>(hl.size()), I.host_threads, [&](int q, int t) {
      const std::size_t j = on_host[q];
      const int i = list[j];
      loss[j] = I.var_pro.trial(I.host, i, I.h_theta.data() + I.theta_at(i),
                                take_step ? I.h_step.data() + I.vec_at(i) : nullptr, I.h_trial.data() + I.vec_at(i),
                                I.host_ws[t], alpha != nullptr ? alpha[j] : 1.0);
    });
    // The device's copy of each, so that accepting is the same for all.
    I.copy_in(hl, I.h_trial.data(), vec_at, I.vp_trial.get(), theta_at, params);
    for (int i : hl) I.trial_on_host[i] = 1;
    CUDA_CHECK(cudaStreamSynchronize(I.stream.get()));
  }
  const double secs = now() - t0;
  I.stats.host_seconds += secs - device_secs;
  I.charge(list, secs);
}

void CudaBackend::var_pro_accept(const std::vector<int>& list) {
  Impl& I = *impl_;
  if (list.empty()) return;
  cudaStream_t st = I.stream.get();
  // var_pro_trial left each trial in vp_trial (theta's layout), and a host trial in h_trial too.
  std::vector<CallNet> cl;
  for (int i : list) cl.push_back(CallNet{i, 0, I.params_of(i)});
  I.vp_calls2.upload(I.copies, cl.data(), cl.size(), st);
  take_trials(I.vp_calls2.get(), static_cast<int>(cl.size()), I.d_nets.get(), I.vp_trial.get(), I.theta.get(), st);
  for (int i : list) {
    if (I.trial_on_host[i]) {
      std::copy_n(I.h_trial.data() + I.vec_at(i), I.params_of(i), I.h_theta.data() + I.theta_at(i));
      I.theta_held[i] = 1;
    } else {
      I.theta_held[i] = 0;
    }
    // The host half's caches: a host trial's residuals become the network's; after a device
    // trial it holds nothing of the new parameters (and no residuals of a rejected host trial).
    if (I.trial_on_host[i]) I.var_pro.accept(i);
    else I.var_pro.moved(i);
    I.resid_ok[i] = 0;
    I.vp_kept[i] = 0;
  }
  CUDA_CHECK(cudaStreamSynchronize(st));
}

std::optional<HostTransfers> CudaBackend::host_transfers() const {
  HostTransfers t = impl_->copies.count();
  t.host_var_pro_systems = static_cast<std::uint64_t>(impl_->host_systems);
  t.host_var_pro_trials = static_cast<std::uint64_t>(impl_->host_trials);
  return t;
}

const CudaStats& CudaBackend::stats() const { return impl_->stats; }
void CudaBackend::reset_stats() { impl_->stats = CudaStats{}; }

}  // namespace gs
