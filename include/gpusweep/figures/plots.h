// Pictures of a results directory through gnuplot: the scaling figure (test RMSE against P,
// log-log, with the fitted lines), and for chosen networks the fitted function with its cell
// boundaries and pointwise error, and each neuron's contribution. PNG and SVG in DIR/plots.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace gs {

// A network chosen for the per-network figures. It matches every activation and target.
struct NetPick {
  std::string arch;
  int width = 0;
  int seed = 0;
};

// Parses "arch:width:seed,..." (--nets). Throws std::invalid_argument naming --nets.
std::vector<NetPick> parse_net_picks(const std::string& text);

// Thrown when no gnuplot executable is on PATH.
class GnuplotMissing : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The gnuplot executable found on PATH, or "" when there is none.
std::string find_gnuplot();

struct PlotReport {
  std::vector<std::string> files;  // written, under DIR/plots
  std::vector<std::string> notes;  // what was left out and why, one line each
};

// Reads DIR/results.csv, DIR/summary.json and, when present, DIR/params_index.csv and
// DIR/params.bin, and writes the figures into DIR/plots. With no picks: for each arch, its
// widest width of seed 0. Throws std::invalid_argument for a missing or malformed DIR or a
// pick that matches no network, GnuplotMissing without gnuplot, std::runtime_error when
// gnuplot fails.
PlotReport plot_run(const std::string& dir, const std::vector<NetPick>& picks);
// The scaling figures alone (after `fit` changed the fits they draw).
PlotReport plot_scaling(const std::string& dir);

// The figures of a `gpu-sweep ntk` directory into DIR/plots: the condition number against d
// and against width (ntk_cond_vs_d, ntk_cond_vs_width), the log10 eigenvalue histograms of
// the archs overlaid (ntk_hist_*), and with dynamics the median loss curves with the
// crossing marked (ntk_loss_*). Throws as plot_run does.
PlotReport plot_ntk(const std::string& dir);

}  // namespace gs
