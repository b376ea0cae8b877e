// The bodies of gpu-sweep's commands: a sweep (the main command), fit, merge, plot and ntk.
// Each returns the exit code; bad input throws std::invalid_argument, other failures
// std::runtime_error, for main() to print.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/cli_options.h"
#include "gpusweep/analysis/ntk_run.h"

namespace gs {

// A sweep, or the rest of one with --resume. app: the command line, for --resume's checks.
// out_dir, when given, gets the run's directory once it is chosen. Returns 130 when SIGINT or
// SIGTERM stopped it (its handlers stay installed; a caller that had its own restores them).
int run(Options o, const CLI::App& app, std::string* out_dir = nullptr);
// `gpu-sweep fit DIR`: the fits again, from DIR/results.csv, with the fit options given now
// (cmd: the fit subcommand); one left out keeps the value of DIR's last fit. Rewrites the
// fits in DIR/summary.json (the run's config and counts are kept), prints the table, and
// redraws the scaling figures when DIR has figures.
int refit(Options o, const CLI::App& cmd);
// `gpu-sweep merge DIR... --out DIR`: the shards 1/N..N/N of one sweep into one directory,
// as if the sweep had run whole, with its figures.
int merge(const Options& o, const std::vector<std::string>& dirs);
// `gpu-sweep plot DIR`: the figures of a sweep's or an ntk run's directory; nets: --nets.
int plot(const std::string& dir, const std::string& nets, const Options& o);
// `gpu-sweep ntk`: the NTK spectra of a sweep of networks and, with --steps, their loss
// curves under gradient descent. Everything is computed before the first file is written.
int ntk(const NtkArgs& a, const Options& o);

}  // namespace gs
