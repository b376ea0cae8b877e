// The command line's options: the Options struct, their CLI11 flags, and their checks and
// translation into a sweep, a device and the fit options.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "gpusweep/analysis/fit.h"
#include "gpusweep/backend/backend.h"
#include "gpusweep/train/sweep.h"

namespace gs {

struct Options {
  std::string arch = "mlp,glu,gqu";
  std::string activation = "relu";
  std::string widths = "1:50";
  int seeds = 1;
  std::string target = "invcos2";
  std::string data;
  double test_fraction = 0.2;
  int points = 10000;
  int dim = 0;  // input dimension of expression targets; 0: from the expression
  std::string standardize = "on";
  std::uint64_t data_seed = 0;
  std::string schedule = "D,U,Q,R,S,G,ALL*100";
  std::string hessian = "exact";
  std::string init = "auto";
  std::string projection = "on";
  std::string optimizer = "newton";
  double adam_lr = 1e-3;
  int adam_steps = 10000;
  std::string device = "auto";
  int threads = 0;
  std::string cholesky = "auto";
  std::string out;
  bool overwrite = false;
  int fit_min_width = 4;
  int fit_max_width = 0;
  int bootstrap = 2000;
  bool quiet = false;
  std::string fit_dir;  // the `fit DIR` subcommand
  bool no_plots = false;
  std::string resume;   // a directory of an unfinished sweep
  std::string shard;    // "k/N"
  int chunk_networks = 0;
  int restarts = 0;
  // Not options but the run's provenance: the command line as typed (shell-quoted), and the
  // file --data is read from (empty: --data itself; on --resume, the absolute path that the
  // manifest recorded, so that a relative --data works from any directory).
  std::string command_line;
  std::string data_file;
};

// The --data file a sweep read: its absolute path and the SHA-256 of the bytes it parsed.
struct DataFile {
  std::string path;
  std::string sha256;
};

// The options that decide a sweep's results, as manifest.json records them and summary.json's
// config repeats them. Each entry maps the key to its option (key "data_seed" is
// --data-seed) and the Options field. A new option is one line here (and its CLI flag).
template <class F>
void for_each_sweep_option(Options& o, F&& f) {
  f("arch", o.arch);
  f("activation", o.activation);
  f("widths", o.widths);
  f("seeds", o.seeds);
  f("target", o.target);
  f("data", o.data);
  f("test_fraction", o.test_fraction);
  f("points", o.points);
  f("dim", o.dim);
  f("standardize", o.standardize);
  f("data_seed", o.data_seed);
  f("schedule", o.schedule);
  f("hessian", o.hessian);
  f("init", o.init);
  f("projection", o.projection);
  f("optimizer", o.optimizer);
  f("adam_lr", o.adam_lr);
  f("adam_steps", o.adam_steps);
  f("restarts", o.restarts);
  f("device", o.device);
  f("shard", o.shard);
}

// The option of a key of for_each_sweep_option: "data_seed" -> "--data-seed".
std::string option_of(const std::string& key);

// A CLI11 check that a path option (--out, --data) is not empty.
CLI::Validator non_empty_path();

// The sweep's flags on the main command, from --arch to --chunk-networks, in the order --help
// lists them.
void add_sweep_options(CLI::App& app, Options& o);

// Refuses an option given on the command line that this sweep would ignore: --target and
// --points with --data, --test-fraction and --standardize without it.
void refuse_ignored_options(const Options& o, const CLI::App& app);

// A CLI11 parse error as one line in the style of the program's own: the option first, then
// what is wrong with it ("--seeds: want a whole number from 1 to 1000000, not 'abc'").
std::string cli_error_message(const CLI::ParseError& e, const CLI::App& app);

// The sweep the options ask for. Everything that can be wrong with the input is found here,
// before any output exists.
// With data, the --data file's path and checksum.
SweepSpec build_spec(const Options& o, DataFile* data = nullptr);
DeviceKind parse_device(const std::string& d);
FitOptions fit_options(const Options& o);

}  // namespace gs
