// The `gpu-sweep ntk` experiment: networks of every (input dimension x arch x activation x
// width x seed), their NTK spectra at initialization (and optionally after training), loss
// curves under gradient descent and the loss crossing of each gated arch against the mlp;
// then the CSV files and the summary that record them.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "gpusweep/analysis/ntk.h"

namespace gs {

// The command line's text, checked by make_ntk_spec.
struct NtkArgs {
  std::string problem = "linear";
  std::string arch = "mlp,glu";
  std::string activation = "relu";
  std::string dims;  // default: 20 for linear, 1 for a 1D target
  std::string widths = "1000";
  int points = 40;
  int seeds = 1;
  bool match_params = false;
  double noise = 0.1;
  std::uint64_t data_seed = 0;
  std::string device = "auto";
  int threads = 0;
  int hist_bins = 40;
  bool spectra_after = false;
  int steps = 0;
  double lr_c = 0.5;
  std::string lr_rule;  // own (the default when empty) or shared (see NtkSpec::shared_lr)
  int batch = 0;
  int record_every = 0;  // 0: about 500 records over the run
};

struct NtkSpec {
  std::string problem;  // "linear", or a 1D target (built-in name or expression in x)
  std::vector<Dataset> datasets;  // one per input dimension
  std::vector<Arch> archs;
  std::vector<Act> acts;
  std::vector<int> widths;  // the widths asked for; with match_params the gated archs' differ
  int seeds = 1;
  bool match_params = false;
  bool lecun = true;  // LeCun init (linear); MASO for 1D targets
  DeviceKind device = DeviceKind::kAuto;
  int threads = 0;
  int hist_bins = 40;
  bool spectra_after = false;
  DynamicsOptions dyn;
  // false: each network steps with eta = lr_c N / its own lambda_max. true: the networks that
  // differ only in arch (same d, activation, width and seed) share the step of the largest
  // lambda_max among them, the largest step that is stable for all of them.
  bool shared_lr = false;
};

// Everything wrong with the arguments is found here, before any output: one line, naming the
// option, as std::invalid_argument.
NtkSpec make_ntk_spec(const NtkArgs& a);

// One network of the experiment.
struct NtkNet {
  int dataset;
  Arch arch;
  Act act;
  int base_width;  // the --widths value it comes from
  int width;       // its own width (matched_width with --match-params)
  int seed;
};
std::vector<NtkNet> make_ntk_nets(const NtkSpec& spec);

struct NtkResult {
  std::vector<NtkNet> nets;
  std::vector<SpectrumSummary> init, after;  // after: with spectra_after and steps > 0
  std::vector<std::vector<double>> eig_init, eig_after;
  std::vector<LossCurve> curves;  // with steps > 0
  std::vector<int> steps;         // the recorded steps
  std::string backend;            // what computed the spectra
  double seconds_spectra = 0.0, seconds_dynamics = 0.0;
};

// Builds, initializes and measures every network. progress (may be empty) gets one line per phase.
NtkResult run_ntk(const NtkSpec& spec, const std::function<void(const std::string&)>& progress);

// The files of a finished run, as text: ntk.csv (one row per network and spectrum),
// ntk_hist.csv, ntk_loss.csv and ntk_loss_median.csv (with steps), ntk_crossing.csv (with
// steps, for each gated arch against mlp), and ntk_summary.json.
struct NtkFiles {
  std::string ntk_csv, hist_csv, loss_csv, median_csv, crossing_csv;
  nlohmann::json summary;
};
NtkFiles ntk_files(const NtkSpec& spec, const NtkResult& r, const nlohmann::json& config);

// The terminal table: median condition numbers, the gated/mlp ratios and the crossings.
void print_ntk_table(std::ostream& os, const nlohmann::json& summary);

}  // namespace gs
