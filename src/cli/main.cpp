// gpu-sweep: trains a sweep of tiny networks with Newton's method and reports L(P) slopes.
// main() sets up the command line (CLI11) and runs the command it names.
#include <CLI/CLI.hpp>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/cli_options.h"
#include "cli/commands.h"
#include "cli/run_dir.h"
#include "gpusweep/analysis/ntk_run.h"
#include "gpusweep/io/output.h"
#include "gpusweep/model/model.h"
#include "gpusweep/util/text.h"
#include "gpusweep_version.h"

int main(int argc, char** argv) {
  gs::Options o;
  o.command_line = gs::shell_quote(argc, argv);
  CLI::App app{"gpu-sweep: train sweeps of tiny mlp/glu/gqu networks with Newton's method in float64 "
               "and report the L(P) scaling slopes."};
  app.set_version_flag("--version", std::string("gpu-sweep ") + GPUSWEEP_VERSION + " (commit " +
                                        GPUSWEEP_COMMIT + ")",
                       "print the version and the commit this binary was built from, and exit");
  gs::add_sweep_options(app, o);
  CLI::App* fit_cmd = app.add_subcommand(
      "fit", "recompute the slope fits of a results directory (its results.csv) with the fit options "
             "given here, rewrite its summary.json fits and print them");
  fit_cmd->add_option("DIR", o.fit_dir, "a directory written by gpu-sweep")->required();
  fit_cmd->add_option("--fit-min-width", o.fit_min_width, "smallest width in the slope fits")
      ->check(CLI::Range(1, gs::kMaxWidth));
  fit_cmd->add_option("--fit-max-width", o.fit_max_width, "largest width in the slope fits (0 = no limit)")
      ->check(CLI::Range(0, gs::kMaxWidth));
  fit_cmd->add_option("--bootstrap", o.bootstrap, "resamples of the seeds for the slope intervals")
      ->check(CLI::Range(0, 1000000));
  fit_cmd->add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  std::vector<std::string> merge_dirs;
  CLI::App* merge_cmd = app.add_subcommand(
      "merge", "merge the finished shards 1/N..N/N of one sweep into --out, with their fits and plots");
  merge_cmd->add_option("DIR", merge_dirs, "the shards' directories")->required();
  merge_cmd->add_option("--out", o.out, "the merged directory")->required();
  merge_cmd->add_flag("--overwrite", o.overwrite, "replace results already in --out");
  merge_cmd->add_flag("--no-plots", o.no_plots, "do not write the figures");
  merge_cmd->add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  std::string plot_dir, plot_nets;
  CLI::App* plot_cmd = app.add_subcommand("plot", "draw the figures of a results directory into DIR/plots");
  plot_cmd->add_option("DIR", plot_dir, "a directory written by gpu-sweep (--out)")->required();
  plot_cmd->add_option("--nets", plot_nets,
                   "networks for the per-network figures, arch:width:seed,... (default: each arch's widest "
                   "width, seed 0)");
  gs::NtkArgs ntk_args;
  CLI::App* ntk_cmd = app.add_subcommand(
      "ntk", "NTK spectra (K = J J^T over the training points and all parameters) of a sweep of networks: "
             "condition numbers, eigenvalue histograms and, with --steps, gradient-descent loss curves and the "
             "loss crossing of each gated arch against the mlp; writes DIR/ntk.csv and its companions");
  ntk_cmd->add_option("--problem", ntk_args.problem,
                      "linear (x ~ N(0, I_d), y = x . w + noise, LeCun init) or a 1D target of the sweeps "
                      "(name or expression in x, MASO init)")->capture_default_str();
  ntk_cmd->add_option("--arch", ntk_args.arch, "trained architectures of the sweep: mlp, glu, gqu, gated:K, gpoly:K (comma-separated)")->capture_default_str();
  ntk_cmd->add_option("--activation", ntk_args.activation, "relu, gelu, silu, sigmoid (comma-separated)")
      ->capture_default_str();
  ntk_cmd->add_option("--dims", ntk_args.dims, "input dimensions of the linear problem, comma-separated (20)");
  ntk_cmd->add_option("--widths", ntk_args.widths, "widths: A:B, A:B:S or a list")->capture_default_str();
  ntk_cmd->add_flag("--match-params", ntk_args.match_params,
                    "give gated archs the width n (d+1)/(nf d+1) (glu: n (d+1)/(2d+1)), about the mlp's P");
  ntk_cmd->add_option("--points", ntk_args.points, "training points N")->capture_default_str()
      ->check(CLI::Range(2, 10000000));
  ntk_cmd->add_option("--seeds", ntk_args.seeds, "seeds 0..K-1 per network")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  ntk_cmd->add_option("--noise", ntk_args.noise, "linear problem: the noise's standard deviation")
      ->capture_default_str();
  ntk_cmd->add_option("--data-seed", ntk_args.data_seed, "seed of the points, w and the SGD order")
      ->capture_default_str()->check(CLI::Validator(gs::check_uint64_text, ""));
  ntk_cmd->add_option("--device", ntk_args.device, "spectra on cpu, cuda or auto (dynamics run on the CPU)")
      ->capture_default_str();
  ntk_cmd->add_option("--threads", ntk_args.threads, "CPU threads (0 = all cores)")->capture_default_str()
      ->check(CLI::Range(0, 4096));
  ntk_cmd->add_option("--hist-bins", ntk_args.hist_bins, "bins of the log10 eigenvalue histograms")
      ->capture_default_str();
  ntk_cmd->add_option("--steps", ntk_args.steps, "gradient-descent steps (0: spectra only)")->capture_default_str();
  ntk_cmd->add_option("--lr-c", ntk_args.lr_c, "step size eta = c N / lambda_max(K) of each network")
      ->capture_default_str();
  ntk_cmd->add_option("--lr-rule", ntk_args.lr_rule,
                      "own: each network's lambda_max sets its eta; shared: the archs of one (d, activation, width, "
                      "seed) share the eta of their largest lambda_max (default own; needs --steps)");
  ntk_cmd->add_option("--batch", ntk_args.batch, "SGD minibatch size (0: full-batch gradient descent)")
      ->capture_default_str();
  ntk_cmd->add_option("--record-every", ntk_args.record_every, "record the loss every k steps (0: about 500 records)")
      ->capture_default_str();
  ntk_cmd->add_flag("--spectra-after", ntk_args.spectra_after, "the spectra again after training (rows 'trained')");
  ntk_cmd->add_option("--out", o.out, "output directory (default runs/<timestamp>)")->check(gs::non_empty_path());
  ntk_cmd->add_flag("--overwrite", o.overwrite, "replace results already in --out");
  ntk_cmd->add_flag("--no-plots", o.no_plots, "do not write the figures");
  ntk_cmd->add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << (plot_cmd->parsed() ? plot_cmd->help() : ntk_cmd->parsed() ? ntk_cmd->help() : app.help());
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "gpu-sweep: error: " << gs::printable(gs::cli_error_message(e, app), 2000) << "\n";
    return 2;
  }
  try {
    if (*fit_cmd) return gs::refit(o, *fit_cmd);
    if (*merge_cmd) return gs::merge(o, merge_dirs);
    if (*ntk_cmd) return gs::ntk(ntk_args, o);
    if (*plot_cmd) return gs::plot(plot_dir, plot_nets, o);
    return gs::run(o, app);
  } catch (const std::invalid_argument& e) {
    // Messages quote the user's text, which may hold a newline; the error stays one line.
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 2;
  } catch (const gs::WriteError& e) {  // a full disk: the user's to fix, as bad input is
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 1;
  }
}
