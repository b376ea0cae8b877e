// What a sweep names: activations (--activation), widths (--widths) and models (--arch: the
// trained architectures and the baselines that need no training), with their parsers.
#pragma once

#include <string>
#include <vector>

#include "gpusweep/model/activation.h"
#include "gpusweep/model/arch.h"

namespace gs {

const char* act_name(Act a);
// "relu,gelu,...": relu, gelu, silu, sigmoid; each once, in the order given. Throws
// std::invalid_argument with a one-line message naming --activation.
std::vector<Act> parse_acts(const std::string& text);

// "A:B" (inclusive), "A:B:S" or a list "4,8,16"; widths from 1 to kMaxWidth, sorted, unique.
// Throws std::invalid_argument with a one-line message naming --widths.
constexpr int kMaxWidth = 100000;
std::vector<int> parse_widths(const std::string& text);

// How a sweep entry gets its parameters: trained by the Newton driver, built by the paper's
// construction (no training), fitted as a least-squares spline, or built as the network that
// equals a least-squares spline (no training).
enum class Method : int { kTrain = 0, kPaper = 1, kSpline = 2, kConstruct = 3 };

// One --arch name: an architecture of arch.h by its name ("mlp", "glu", "gqu", "gated:3",
// ...; trained), that name with "-construct" (the spline network, see spline_network in
// baselines.h), the paper's constructions "mlp-paper" and "glu-paper", or "spline1" ..
// "spline5". A plain Arch converts to its trained model.
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

// The spline baselines go up to the degree of the highest construction, K + 1.
constexpr int kMaxSplineDegree = kMaxFactors;

std::string model_name(const Model& m);
// Parses one --arch name; false when it is none of the names above.
bool parse_model(const std::string& name, Model* out);
// Every accepted name, in the order the help and the error messages list them.
std::vector<std::string> model_names();
// A comma-separated --arch list: trained archs (mlp, glu, gqu, ...) and baselines
// (mlp-construct, mlp-paper, spline1, ...), each once. Throws std::invalid_argument with a
// one-line message naming --arch and the names it accepts.
std::vector<Model> parse_archs(const std::string& text);

// P of a model at width n (d inputs): the network's parameter count for trained and
// constructed models, the number of spline coefficients (n + degree) for splines.
int model_num_params(const Model& m, int d, int width);
// P less the network's continuous symmetries (network.h effective_params) with the
// activation the model runs; a spline's coefficients are all effective.
int model_effective_params(const Model& m, int d, int width, Act trained_act);

// The activation a row reports. --activation applies to trained models only: constructions
// are relu networks, and splines have no activation ("none").
const char* model_act_name(const Model& m, Act trained_act);

}  // namespace gs
