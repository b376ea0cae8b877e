// The CUDA backend: the batch lives in flat device arrays, kernels (batch_kernels.h) assemble
// every network's system in one launch per operation, and cuSOLVER factorizes them grouped by
// size. A plain C++ header, free of CUDA types, so host code can include it.
#pragma once

#include <memory>
#include <string>

#include "cuda_plan.h"
#include "gpusweep/backend/backend.h"

namespace gs {

// Number of CUDA devices visible to this process; 0 with the reason in *why when there are
// none (no driver, no device, CUDA_VISIBLE_DEVICES empty).
int cuda_device_count(std::string* why);

// Whether this binary holds a kernel image the device can run (a cubin for its architecture
// or PTX it can compile); false with one line in *why when it does not. Needs the device to
// exist.
bool cuda_kernel_image(int device, std::string* why);

struct CudaOptions {
  int device = 0;
  // The Cholesky path of each size group (cuda_plan.h): cusolverDnDpotrfBatched or one
  // cusolverDnXpotrf per matrix over loop_streams streams.
  CholeskyTable cholesky = parse_cholesky("auto");
  int loop_streams = 8;
  std::size_t scratch_bytes = 0;  // the damped matrices' scratch; 0: cuda_memory_plan's choice
  double memory_fraction = 0.85;  // of the free device memory at creation
  // Networks per chunk at most, so that a long run saves its results as it goes.
  int max_chunk_networks = 4096;
  // The general J^T J assembly: Jacobian rows computed once per chunk of this many points into
  // the damped matrices' scratch (free during assembly), then J^T J from them; 0: every
  // Hessian tile evaluates its own Jacobian entries (hessian_tiles, the earlier kernel).
  int jacobian_rows = 256;
  // J^T J of those rows by cublasDgemmGroupedBatched (FP64 tensor cores) instead of the tile
  // kernel.
  bool jtj_gemm = false;
  // Bytes of those rows at most per group of networks; 0: as many as the scratch holds.
  std::size_t jacobian_group_bytes = 0;
  // Threads of the solver's host half (least squares, variable projection); 0: all cores.
  int host_threads = 0;
  // Host bytes at most for the Hessians that variable projection copies back at once.
  std::size_t host_system_bytes = std::size_t(1) << 30;
  // Variable projection of relu 1D networks on the device (var_pro_kernels.h); off: on the
  // host half, as for the other networks.
  bool device_var_pro = true;
  // Device bytes at most for the variable-projection systems of relu 1D networks built at once
  // (a group larger than this is built and solved in turns).
  std::size_t device_system_bytes = std::size_t(1) << 30;
};

// Counters for the benchmark: time on the device and useful FP64 operations.
struct CudaStats {
  double assemble_seconds = 0.0;  // general path: gradient, J^T J tiles, curvature kernels
  double assemble_flops = 0.0;    // general path: 2 N m(m+1)/2 per system (J^T J, lower)
  double relu1d_seconds = 0.0;    // relu / 1D path: its four kernels
  double relu1d_entries = 0.0;    // relu / 1D path: Hessian entries (lower) from moments
  double factor_seconds = 0.0;    // potrf + potrs, from each round's fork to its join
  double factor_flops = 0.0;      // m^3 / 3 per factorization
  long long factorizations = 0;
  long long looped = 0;  // of them, by the per-matrix path
  long long rounds = 0;  // scratch rounds
  // The solver's host half (least squares, variable projection), copies to and from the
  // device included.
  double host_seconds = 0.0;
  // Variable projection of relu 1D networks on the device: its wall time (systems, steps and
  // trials), the systems whose linear columns it found dependent (sent to the host half), the
  // damping retries solved on a system kept from the try before, and the trials whose main
  // linear columns it found dependent (least_squares_values' dgelsd path, on the host half).
  double device_var_pro_seconds = 0.0;
  long long dependent_systems = 0;
  long long kept_systems = 0;
  long long dependent_trials = 0;
  // The reduced systems' Cholesky factorizations (tests and tries), and of them those by the
  // per-matrix path (the Cholesky table, as for the Newton systems).
  long long reduced_factorizations = 0, reduced_looped = 0;
  // Variable-projection systems and trials that host threads made (LAPACK): the networks that
  // are not relu on 1D inputs, and the dependent ones above.
  long long host_systems = 0, host_trials = 0;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string describe() const override;
  std::size_t bytes_per_network(int num_params, int num_points) const override;
  std::size_t memory_budget() const override;
  int max_chunk_networks() const override;
  void load(const Batch& batch) override;
  void read_params(std::vector<double>& params) override;
  void assemble(const std::vector<int>& nets, Block stage, HessianKind kind, double* loss,
                double* scaled_grad) override;
  void read_system(int i, std::vector<double>* H, std::vector<double>* g) override;
  void solve(const std::vector<int>& nets, const double* lambda, int* info,
             double* gdotp) override;
  void trial_losses(const std::vector<int>& nets, const double* alpha, int n_alpha,
                    double* loss) override;
  void apply_step(const std::vector<int>& nets, const double* alpha) override;
  void rmse(double* train, double* test) override;
  void network_seconds(double* seconds) override;
  // Every copy between the host and the device, counted where it is made (to_host, to_device).
  std::optional<HostTransfers> host_transfers() const override;
  // Linear stages and variable projection: the host half of the solver (host_solver.h), the
  // CPU backend's math, on copies of the parameters and of the systems assembled here.
  void least_squares(const std::vector<int>& nets, Block stage, int* rank, double* loss) override;
  void var_pro_solve(const std::vector<int>& nets, const double* lambda, int* info,
                     StepModel* model) override;
  void var_pro_trial(const std::vector<int>& nets, bool take_step, double* loss,
                     const double* alpha = nullptr) override;
  void var_pro_accept(const std::vector<int>& nets) override;
  // Adam's passes: the residual and gradient kernels of the general assembly over every
  // parameter (no Hessian), and theta updated in place on the device.
  void gradient(const std::vector<int>& nets, double* loss, double* grad) override;
  void add_params(const std::vector<int>& nets, const double* delta) override;
  void set_params(const std::vector<int>& nets, const double* values) override;

  const CudaStats& stats() const;
  // What the backend set aside at creation and plans chunks into.
  const CudaMemory& memory() const;
  void reset_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gs
