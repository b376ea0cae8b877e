// The Backend interface: every operation acts on a list of networks of the loaded batch at
// once. The Newton driver talks only to this; the CPU (threads + LAPACK) and CUDA (kernels +
// cuSOLVER) backends implement it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpusweep/model/batch.h"

namespace gs {

// What assemble() builds besides the loss and the gradient: the exact Hessian, its Gauss-Newton
// part J^T J, or only the diagonal of the Gauss-Newton part (kDiagonal: all that the Jacobi
// scale, the scaled gradient and the variable projection of a relu network on 1D inputs read;
// solve() cannot follow it). A backend may build the full Gauss-Newton Hessian for kDiagonal.
enum class HessianKind : int { kExact = 0, kGaussNewton = 1, kDiagonal = 2 };
struct StepModel;  // var_pro.h
enum class DeviceKind : int { kCpu = 0, kCuda = 1, kAuto = 2 };

// Whether a run on `device` goes to the CUDA backend: --device cuda always (throws
// std::invalid_argument with one clear line when this build has no CUDA backend, its CUDA
// plugin does not load, or no GPU is visible), auto when GPU 0 is visible, the plugin loads and
// holds a kernel image for it, cpu never. When auto passes over a visible GPU, *why (if given)
// says why in one line. The plugin and the CUDA libraries load only for --device cuda and for
// auto where the driver sees a GPU.
bool use_cuda(DeviceKind device, std::string* why = nullptr);

// The bytes a backend with a device has copied between the host and the device, by direction:
// every copy, of parameters, systems, losses, the data and the work lists alike.
struct HostTransfers {
  std::uint64_t bytes_to_host = 0;
  std::uint64_t bytes_to_device = 0;
  // Variable-projection systems and trials that host threads made (LAPACK) instead of the
  // device: networks the device path does not take, and those it found dependent.
  std::uint64_t host_var_pro_systems = 0;
  std::uint64_t host_var_pro_trials = 0;
};

struct BackendOptions {
  DeviceKind device = DeviceKind::kCpu;
  int threads = 0;  // CPU threads; 0 = all cores
  std::string cholesky = "auto";  // the CUDA backend's Cholesky paths (--cholesky)
};

// Per-call index lists name networks by their position in the loaded batch. All networks of
// one call train the same stage block. Arrays indexed "per listed network" have nets.size()
// entries in the order of nets.
class Backend {
 public:
  virtual ~Backend() = default;

  // Returns the backend the options ask for; throws std::invalid_argument with one clear
  // line when it cannot (no GPU visible, CUDA backend not built).
  static std::unique_ptr<Backend> create(const BackendOptions& options);

  virtual std::string describe() const = 0;

  // Bytes this backend holds per network of num_params parameters, training on a dataset of
  // num_points points (training and test together); the planner sizes chunks with it.
  virtual std::size_t bytes_per_network(int num_params, int num_points) const = 0;
  virtual std::size_t memory_budget() const = 0;
  // The most networks one chunk should hold (0: as many as memory allows). Every finished
  // chunk is saved to disk, so smaller chunks lose less to an interruption.
  virtual int max_chunk_networks() const { return 0; }

  virtual void load(const Batch& batch) = 0;
  virtual void read_params(std::vector<double>& params) = 0;

  // Assembles gradient and Hessian of the training MSE over the stage's parameters and keeps
  // them for solve(). Writes per listed network the loss and the Jacobi-scaled gradient norm
  // max_i |g_i| / sqrt(|H_ii|) (over rows that are not singular).
  virtual void assemble(const std::vector<int>& nets, Block stage, HessianKind kind, double* loss,
                        double* scaled_grad) = 0;

  // Copies network i's last assembled Hessian (m x m, column-major) and gradient; for tests
  // and for comparing backends. After a kDiagonal assembly that built only the diagonal, H
  // holds it with zeros elsewhere.
  virtual void read_system(int i, std::vector<double>* H, std::vector<double>* g) = 0;

  // Solves (S H S + lambda I) z = -S g with S = diag(1/sqrt|H_ii|), singular rows set to
  // identity with zero rhs, step = S z. Writes per listed network the Cholesky info (0 ok,
  // > 0 not positive definite) and g . step (meaningful when info == 0).
  virtual void solve(const std::vector<int>& nets, const double* lambda, int* info, double* gdotp) = 0;

  // For a linear stage (stage_is_linear) of each listed network: puts into the step the change
  // from the stage's current values to the least-squares optimum of the training loss with the
  // other blocks held, of least Jacobi-scaled norm in the exact null space, solved on an
  // orthogonal compression of the stage's Jacobian (least_squares.h: J^T J is never formed, so
  // its conditioning is not squared); trial_losses and apply_step then act on it. Writes per
  // listed network the numerical rank and the training loss at the current parameters.
  virtual void least_squares(const std::vector<int>& nets, Block stage, int* rank, double* loss) = 0;

  // After assemble(nets, Block::kAll, ...): the Newton step on each network's nonlinear
  // parameters with the linear ones eliminated (the Schur complement of the exact Hessian, by
  // QR of the compressed Jacobian: var_pro.h), Levenberg-Marquardt damped by lambda, into the
  // step (zero on the linear and the fixed parameters). Writes per listed network the Cholesky
  // info and the reduced quadratic model at the step (StepModel: the decrease it predicts, its
  // slope and curvature along the step). A call with the same networks and no assembly in
  // between (a damping retry) may reuse the reduced systems.
  virtual void var_pro_solve(const std::vector<int>& nets, const double* lambda, int* info,
                             StepModel* model) = 0;

  // The trial theta + alpha step (alpha per listed network, 1 when null; theta itself without
  // take_step), the kinks of the neurons that
  // var_pro.h calls thin pushed out of the domain (push_out_thin), with the linear parameters
  // then solved to their least-squares optimum (least_squares); writes its training loss per
  // listed network and keeps it for var_pro_accept.
  virtual void var_pro_trial(const std::vector<int>& nets, bool take_step, double* loss,
                             const double* alpha = nullptr) = 0;

  // theta = the last trial, for each listed network.
  virtual void var_pro_accept(const std::vector<int>& nets) = 0;

  // The training MSE of each listed network and its gradient over all its parameters, in one
  // pass over the points without a Hessian. grad holds the listed networks' gradients one
  // after another, num_params of each.
  virtual void gradient(const std::vector<int>& nets, double* loss, double* grad) = 0;

  // theta += delta for each listed network (delta laid out as gradient's grad).
  virtual void add_params(const std::vector<int>& nets, const double* delta) = 0;

  // theta = values for each listed network (laid out as gradient's grad), exactly.
  virtual void set_params(const std::vector<int>& nets, const double* values) = 0;

  // Training losses at theta + alpha[t] * step for t < n_alpha, in one pass over the data.
  // loss is per listed network, n_alpha entries each.
  virtual void trial_losses(const std::vector<int>& nets, const double* alpha, int n_alpha,
                            double* loss) = 0;

  // theta += alpha * step, alpha per listed network.
  virtual void apply_step(const std::vector<int>& nets, const double* alpha) = 0;

  // RMSE on the training and on the test points, for every network of the batch.
  virtual void rmse(double* train, double* test) = 0;

  // Compute seconds spent on each network of the batch since load().
  virtual void network_seconds(double* seconds) = 0;

  // The bytes copied between the host and the device since the backend was made; none for a
  // backend without a device (the CPU backend).
  virtual std::optional<HostTransfers> host_transfers() const = 0;
};

}  // namespace gs
