// The CPU backend: threads over the networks of a batch (OpenMP), Hessian assembly with BLAS
// dsyrk on tiles of Jacobian rows, and LAPACK Cholesky. Each network's arithmetic runs on one
// thread in a fixed order, so results do not depend on the thread count.
#pragma once

#include <vector>

#include "gpusweep/backend/backend.h"
#include "gpusweep/solver/host_solver.h"

namespace gs {

class CpuBackend final : public Backend {
 public:
  // fast_relu1d: relu networks on 1D data use the O(N n + m^2) assembly of relu1d.h; off,
  // they take the general per-point path (its correctness oracle in the tests).
  explicit CpuBackend(int threads, bool fast_relu1d = true);
  std::string describe() const override;
  std::size_t bytes_per_network(int num_params, int num_points) const override;
  std::size_t memory_budget() const override;
  // A few networks per thread: enough to balance the threads, small enough that a chunk
  // finishes (and is saved) often.
  int max_chunk_networks() const override { return 8 * threads_; }
  void load(const Batch& batch) override;
  void read_params(std::vector<double>& params) override;
  void assemble(const std::vector<int>& nets, Block stage, HessianKind kind, double* loss,
                double* scaled_grad) override;
  void read_system(int i, std::vector<double>* H, std::vector<double>* g) override;
  void solve(const std::vector<int>& nets, const double* lambda, int* info,
             double* gdotp) override;
  void least_squares(const std::vector<int>& nets, Block stage, int* rank, double* loss) override;
  void var_pro_solve(const std::vector<int>& nets, const double* lambda, int* info,
                     StepModel* model) override;
  void var_pro_trial(const std::vector<int>& nets, bool take_step, double* loss,
                     const double* alpha = nullptr) override;
  void var_pro_accept(const std::vector<int>& nets) override;
  void gradient(const std::vector<int>& nets, double* loss, double* grad) override;
  void add_params(const std::vector<int>& nets, const double* delta) override;
  void set_params(const std::vector<int>& nets, const double* values) override;
  void trial_losses(const std::vector<int>& nets, const double* alpha, int n_alpha,
                    double* loss) override;
  void apply_step(const std::vector<int>& nets, const double* alpha) override;
  void rmse(double* train, double* test) override;
  void network_seconds(double* seconds) override;
  // The CPU backend has no device: nothing crosses to one.
  std::optional<HostTransfers> host_transfers() const override { return std::nullopt; }

  // Scratch of one thread.
  struct Workspace {
    std::vector<double> tile, row, resid, xtilde, local, trial, work;
    std::vector<NeuronEval> evals;
    // relu on 1D inputs (relu1d.h): prefix sums of r x^j, active ranges, column polynomials.
    std::vector<double> rpre, cols;
    std::vector<int> range, col_index, neuron_cols;
    HostSolver::Workspace host;  // least squares and variable projection
  };
  void assemble_relu1d(int i, Block stage, HessianKind kind, double* loss);

 private:
  Workspace& workspace();
  int threads_;
  bool fast_relu1d_;
  std::vector<NetDesc> nets_;
  std::vector<const Dataset*> data_;
  std::vector<double> theta_;
  // Per network, at offset square_off_[i] (H: P^2) and vec_off_[i] (g, step, scale: P each).
  std::vector<std::size_t> square_off_, vec_off_;
  std::vector<double> H_, g_, step_, scale_;
  std::vector<double> trial_theta_;  // var_pro_trial's parameters, per network (vec_off_)
  std::vector<int> stage_begin_, stage_end_;
  std::vector<double> seconds_;
  std::vector<Workspace> ws_;
  HostSolver host_;  // the sorted 1D points, least squares and variable projection
  // Per network: its last assembly (kDiagonal, relu 1D) wrote only the diagonal of H.
  std::vector<char> diag_only_;
  // Per network: the reduced systems and the residuals that variable projection keeps; the
  // residuals are also the relu 1D assembly's.
  HostVarPro var_pro_;
};

}  // namespace gs
