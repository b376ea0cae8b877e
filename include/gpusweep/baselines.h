// Baselines that need no training: the paper's analytical constructions (section 3) of mlp
// and glu parameters, and least-squares splines of degree 1 to 3 on uniform cells. They run
// on the host, share the sweep's jobs, rows and fits, and never touch the Newton driver.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "gpusweep/batch.h"
#include "gpusweep/driver.h"

namespace gs {

// How a sweep entry gets its parameters: trained by the Newton driver, built by the paper's
// construction (no training), or fitted as a least-squares spline.
enum class Method : int { kTrain = 0, kConstruct = 1, kSpline = 2 };

// One --arch name: "mlp", "glu", "gqu" (trained), "mlp-construct", "glu-construct",
// "spline1", "spline2", "spline3". A plain Arch converts to its trained model.
struct Model {
  Method method = Method::kTrain;
  Arch arch = Arch::kMlp;  // the network trained or constructed; unused by splines
  int degree = 0;          // spline degree; 0 otherwise

  Model() = default;
  Model(Arch a) : arch(a) {}  // NOLINT(google-explicit-constructor): an arch is a trained model
  Model(Method m, Arch a, int deg) : method(m), arch(a), degree(deg) {}
  bool operator==(const Model& o) const {
    return method == o.method && arch == o.arch && degree == o.degree;
  }
};

constexpr int kMaxSplineDegree = 3;

std::string model_name(const Model& m);
// Parses one --arch name; false when it is none of the names above.
bool parse_model(const std::string& name, Model* out);
// Every accepted name, in the order the help and the error messages list them.
std::vector<std::string> model_names();

// P of a model at width n (d inputs): the network's parameter count for trained and
// constructed models, the number of spline coefficients (n + degree) for splines.
int model_num_params(const Model& m, int d, int width);

// The activation a row reports. --activation applies to trained models only: constructions
// are relu networks, and splines have no activation ("none").
const char* model_act_name(const Model& m, Act trained_act);

// f evaluated at a list of points (a target's expression, or a test's lambda).
using TargetFn = std::function<std::vector<double>(const std::vector<double>&)>;

// The paper's construction of a width-n network on [lo, hi], cut into n equal cells with
// boundaries x_k = lo + k h. Every neuron k has G_k = 1, g_k = -x_k, so exactly one neuron
// switches on at each boundary, and d0 = f(lo). Sweeping the cells left to right:
//   mlp: D_k is set so that y(x_{k+1}) = f(x_{k+1}): the piecewise-linear interpolant.
//   glu: neuron k adds D_k (x - x_k)(U_k x + u_k), D_k = 1, and U_k, u_k are set so that
//        the cell's quadratic matches f at the cell's middle and right end.
// Returns the parameter vector in the layout of network.h. Only mlp and glu are defined;
// other archs throw std::invalid_argument.
std::vector<double> construct_network(Arch arch, int n, double lo, double hi, const TargetFn& f);

// A spline of one degree on n uniform cells over [lo, hi] in the uniform B-spline basis
// (knots lo + (j - degree) h, j = 0..n + 2 degree): n + degree coefficients. Outside
// [lo, hi] it continues the end cells' polynomials.
struct UniformSpline {
  int degree = 1;
  int cells = 1;
  double lo = 0.0, hi = 1.0;
  std::vector<double> coef;  // n + degree B-spline coefficients

  double operator()(double x) const;
};

// The least-squares spline through the points (x, y), by LAPACK's dgelsd: where the points
// do not determine every coefficient (a cell with too few points) it is the minimum-norm
// solution. Throws std::invalid_argument for a bad degree, width or range.
UniformSpline fit_spline(int degree, int cells, double lo, double hi, const std::vector<double>& x,
                         const std::vector<double>& y);

// Bytes of the dense least-squares matrix fit_spline needs for a width on n_points points.
std::size_t spline_fit_bytes(int degree, int cells, int n_points);

// Builds or fits one baseline model (method kConstruct or kSpline) of width n on a 1D
// dataset and measures it: RMSE on the training and the test points, status converged with
// reason "construction" or "least squares", no Newton steps, params = the network's
// parameters (constructions) or the B-spline coefficients (splines). The construction
// evaluates f through `f` (f at points between the data); splines use the training points.
NetResult run_baseline(const Model& m, int width, const Dataset& ds, const TargetFn& f);

}  // namespace gs
