// The command line's options: their CLI11 flags, and the sweep, device and fit options they
// give. See cli_options.h.
#include "cli/cli_options.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <set>
#include <stdexcept>

#include "cuda_plan.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/model.h"
#include "gpusweep/util/digest.h"
#include "gpusweep/util/text.h"

namespace fs = std::filesystem;

namespace gs {

std::string option_of(const std::string& key) {
  std::string opt = "--" + key;
  std::replace(opt.begin(), opt.end(), '_', '-');
  return opt;
}

CLI::Validator non_empty_path() { return CLI::Validator(gs::check_path_text, ""); }

void add_sweep_options(CLI::App& app, Options& o) {
  app.add_option("--arch", o.arch,
                 "architectures, comma-separated: gated:K for K = 0.." + std::to_string(gs::max_order(gs::Family::kGated)) +
                 " (the gate times K linear factors; mlp = gated:0, glu = gated:1, gqu = gated:2) and gpoly:K "
                 "for K = 0.." + std::to_string(gs::max_order(gs::Family::kGpoly)) + " (the gate times a free polynomial of degree K), trained; "
                 "NAME-construct, the network equal to the least-squares C^K spline of degree K+1 (no "
                 "training); mlp-paper, glu-paper, the paper's constructions; spline1.." +
                 std::to_string(gs::kMaxSplineDegree) + ", least-squares splines")->capture_default_str();
  app.add_option("--activation", o.activation, "activations: relu, gelu, silu, sigmoid (comma-separated)")
      ->capture_default_str();
  app.add_option("--widths", o.widths, "widths: A:B (inclusive), A:B:S, or a list 4,8,16")->capture_default_str();
  app.add_option("--seeds", o.seeds, "run seeds 0..K-1 (the seed drives initialization)")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--target", o.target,
                 "targets, comma-separated: built-in names (" + gs::builtin_target_list() +
                 ") or expressions in x (1D), x and y (2D), or x1..xd")
      ->capture_default_str();
  app.add_option("--dim", o.dim,
                 "input dimension of --target expressions (default: the largest input the expression uses)")
      ->check(CLI::Range(0, gs::kMaxDim));
  const CLI::Validator non_empty = non_empty_path();
  app.add_option("--data", o.data,
                 "train on the rows of a CSV file whose header names the inputs and then y (x,y or x1,...,xd,y)")
      ->check(non_empty);
  app.add_option("--standardize", o.standardize,
                 "with --data: on shifts and scales each input and y to mean 0, deviation 1 on the training rows "
                 "(RMSE is then in units of y's deviation); off keeps the file's units")
      ->capture_default_str();
  app.add_option("--test-fraction", o.test_fraction, "with --data: fraction of the rows held out for test")
      ->capture_default_str();
  app.add_option("--points", o.points,
                 "training points, uniform random on [-1, 1]^d (Friedman: their input ranges); test points: as "
                 "many, a grid in 1D and 2D, a separate random draw beyond")
      ->capture_default_str()->check(CLI::Range(2, 100000000));
  app.add_option("--data-seed", o.data_seed, "seed of the training points")
      ->capture_default_str()
      ->check(CLI::Validator(gs::check_uint64_text, ""));
  app.add_option("--schedule", o.schedule,
                 "Newton stages: " + gs::stage_names() + " (G the gate, U, Q, R, S the factors after it), each "
                 "optionally *steps; an arch skips the stages of factors it lacks")
      ->capture_default_str();
  app.add_option("--hessian", o.hessian, "exact or gn (Gauss-Newton)")->capture_default_str();
  app.add_option("--projection", o.projection,
                 "ALL stage. on: variable projection, Newton on the gates (and middle factors) with the "
                 "last factor and d0 (mlp: D and d0) solved exactly at every step; "
                 "alternate: Newton on all parameters, then exact solves of D and each linear factor in turn; off: plain "
                 "Newton")
      ->capture_default_str();
  app.add_option("--optimizer", o.optimizer,
                 "newton (the schedule above) or adam (Adam on all parameters for --adam-steps steps at "
                 "--adam-lr; either backend)")
      ->capture_default_str();
  app.add_option("--adam-lr", o.adam_lr, "Adam's learning rate")->capture_default_str();
  app.add_option("--adam-steps", o.adam_steps, "Adam's steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  app.add_option("--init", o.init,
                 "auto (maso for 1D inputs, random beyond), maso (spline knots, 1D only), random (gate rows "
                 "N(0, 1/d) through random data points) or spline (the arch's -construct network: training "
                 "starts from the least-squares spline; relu, 1D)")
      ->capture_default_str();
  app.add_option("--restarts", o.restarts,
                 "K more starts per trained network (its knots jittered, its other parameters drawn "
                 "again), all trained; the one with the lowest training loss is kept, and results.csv "
                 "says which (column start)")
      ->capture_default_str()->check(CLI::Range(0, 1000));
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--cholesky", o.cholesky,
                 "CUDA backend: the Cholesky path of each group of same-size systems. auto (" +
                 std::string(gs::kDefaultCholesky) + "), batched (cusolverDnDpotrfBatched), looped (one "
                 "cusolverDnXpotrf per matrix over many streams), or rules SIZE:BATCH,...: from SIZE up, "
                 "batched when a group has at least BATCH matrices (never: always looped)")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads: the CPU backend's, or the CUDA backend's host solver (0 = all cores)")->capture_default_str()->check(CLI::Range(0, 4096));
  app.add_option("--out", o.out, "output directory (default runs/<timestamp>)")->check(non_empty);
  app.add_flag("--overwrite", o.overwrite, "replace results already in --out");
  app.add_option("--fit-min-width", o.fit_min_width, "smallest width in the slope fits")
      ->capture_default_str()->check(CLI::Range(1, gs::kMaxWidth));
  app.add_option("--fit-max-width", o.fit_max_width, "largest width in the slope fits (0 = no limit)")
      ->capture_default_str()->check(CLI::Range(0, gs::kMaxWidth));
  app.add_option("--bootstrap", o.bootstrap, "resamples of the seeds for the slope intervals")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  app.add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  app.add_flag("--no-plots", o.no_plots, "do not write the figures into DIR/plots");
  app.add_option("--resume", o.resume,
                 "continue the unfinished sweep in DIR (its manifest.json gives the options; results "
                 "already saved are kept)");
  app.add_option("--shard", o.shard, "run shard k of N of the sweep (k/N), balanced by cost");
  app.add_option("--chunk-networks", o.chunk_networks,
                 "networks per chunk at most (each finished chunk is saved at once); 0: the backend's choice")
      ->capture_default_str()->check(CLI::Range(0, 100000000));
}

std::string cli_error_message(const CLI::ParseError& e, const CLI::App& app) {
  const std::string msg = e.what();
  // The subcommand being parsed, for its messages and help.
  std::string sub;
  for (const CLI::App* s : app.get_subcommands()) sub = s->get_name();
  const std::string help = "gpu-sweep " + (sub.empty() ? std::string() : sub + " ") + "--help";
  auto option = [&](const std::string& name) -> const CLI::Option* {
    for (const CLI::App* s : app.get_subcommands())
      if (const CLI::Option* o = s->get_option_no_throw(name)) return o;
    return app.get_option_no_throw(name);
  };
  std::smatch m;
  if (std::regex_match(msg, m, std::regex("(\\S+): Value (.*) not in range (\\S+) to (\\S+)")))
    return m[1].str() + ": want a whole number from " + m[3].str() + " to " + m[4].str() + ", not '" + m[2].str() + "'";
  if (std::regex_match(msg, m, std::regex("(\\S+): At Most (\\d+) required but received (\\d+)")))
    return m[1].str() + " is given " + m[3].str() + " times; give it " + (m[2].str() == "1" ? "once" : "at most " + m[2].str() + " times");
  if (std::regex_match(msg, m, std::regex("The following arguments? (?:was|were) not expected: (.*)")))
    return (sub.empty() ? std::string() : sub + ": ") + "unexpected argument" +
           (m[1].str().find(' ') == std::string::npos ? " '" + m[1].str() + "'" : "s: " + m[1].str()) + " (" + help +
           " lists the options)";
  if (std::regex_match(msg, m, std::regex("(\\S+) is required")))
    return (sub.empty() ? std::string() : sub + ": ") + "give " + m[1].str() + " (" + help + ")";
  if (std::regex_match(msg, m, std::regex("(\\S+): \\d+ required .* missing")))
    return m[1].str() + ": needs a value (" + help + ")";
  if (std::regex_match(msg, m, std::regex("Could not convert: (\\S+) = (.*)"))) {
    const CLI::Option* o = option(m[1].str());
    if (o && o->get_expected_max() == 0) return m[1].str() + " is a flag and takes no value, not '" + m[2].str() + "'";
    return m[1].str() + ": '" + m[2].str() + "' is not a number";
  }
  return msg;
}

void refuse_ignored_options(const Options& o, const CLI::App& app) {
  if (!o.data.empty()) {
    for (const char* opt : {"--target", "--points"})
      if (app.count(opt) > 0)
        throw std::invalid_argument(std::string(opt) + " with --data: the data file gives the points and their y, so " +
                                    opt + " would be ignored; leave it out");
  } else {
    for (const char* opt : {"--test-fraction", "--standardize"})
      if (app.count(opt) > 0)
        throw std::invalid_argument(std::string(opt) + " applies to --data only (a --target is sampled at --points "
                                    "training points and as many test points); leave it out");
  }
}

gs::SweepSpec build_spec(const Options& o, DataFile* data) {
  gs::SweepSpec spec;
  spec.archs = gs::parse_archs(o.arch);
  spec.acts = gs::parse_acts(o.activation);
  spec.widths = gs::parse_widths(o.widths);
  spec.seeds = o.seeds;
  spec.restarts = o.restarts;
  if (o.init == "maso") spec.init = gs::InitKind::kMaso;
  else if (o.init == "random") spec.init = gs::InitKind::kRandom;
  else if (o.init == "auto") spec.init = gs::InitKind::kAuto;
  else if (o.init == "spline") spec.init = gs::InitKind::kSpline;
  else throw std::invalid_argument("--init: unknown initialization '" + o.init + "' (auto, maso, random or spline)");
  spec.train.schedule = gs::parse_schedule(o.schedule);
  if (o.hessian == "exact") spec.train.hessian = gs::HessianKind::kExact;
  else if (o.hessian == "gn") spec.train.hessian = gs::HessianKind::kGaussNewton;
  else throw std::invalid_argument("--hessian: unknown kind '" + o.hessian + "' (exact or gn)");
  if (o.projection == "on") {
    spec.train.project = true;
  } else if (o.projection == "alternate") {
    spec.train.project = true;
    spec.train.variable_projection = false;
  } else if (o.projection == "off") {
    spec.train.project = false;
  } else {
    throw std::invalid_argument("--projection: want on, alternate or off, not '" + o.projection + "'");
  }
  if (o.optimizer == "adam") spec.train.optimizer = gs::Optimizer::kAdam;
  else if (o.optimizer != "newton")
    throw std::invalid_argument("--optimizer: want newton or adam, not '" + o.optimizer + "'");
  if (!(o.adam_lr > 0.0 && std::isfinite(o.adam_lr)))
    throw std::invalid_argument("--adam-lr must be a finite number > 0");
  spec.train.adam.lr = o.adam_lr;
  spec.train.adam.steps = o.adam_steps;
  if (!(o.test_fraction >= 0.0 && o.test_fraction < 1.0))
    throw std::invalid_argument("--test-fraction must be in [0, 1)");
  if (o.standardize != "on" && o.standardize != "off")
    throw std::invalid_argument("--standardize: want on or off, not '" + o.standardize + "'");
  if (!o.data.empty()) {
    if (o.dim != 0) throw std::invalid_argument("--dim applies to --target expressions; --data takes d from its columns");
    const std::string file = o.data_file.empty() ? o.data : o.data_file;
    const std::string text = gs::read_data_file(file, o.data);
    if (data) {
      std::error_code ec;
      const fs::path abs = fs::absolute(file, ec);
      data->path = ec ? file : abs.lexically_normal().string();
      data->sha256 = gs::sha256_hex(text);
    }
    spec.datasets.push_back(gs::csv_dataset(text, o.data, o.test_fraction, o.data_seed, o.standardize == "on"));
  } else {
    std::set<std::string> seen;
    for (const auto& t : gs::split_targets(o.target)) {
      if (t.empty()) throw std::invalid_argument("--target: empty target name in '" + o.target + "'");
      if (seen.insert(t).second) spec.datasets.push_back(gs::make_target_dataset(t, o.points, o.data_seed, o.dim));
    }
  }
  if (spec.init == gs::InitKind::kMaso || spec.init == gs::InitKind::kSpline)
    for (const auto& ds : spec.datasets)
      if (ds.d != 1)
        throw std::invalid_argument("--init " + o.init + ": the spline knots need 1D inputs, and '" +
                                    gs::printable(ds.name, 80) +
                                    "' has d = " + std::to_string(ds.d) + " (use auto or random)");
  return spec;
}

gs::DeviceKind parse_device(const std::string& d) {
  if (d == "cpu") return gs::DeviceKind::kCpu;
  if (d == "cuda") return gs::DeviceKind::kCuda;
  if (d == "auto") return gs::DeviceKind::kAuto;
  throw std::invalid_argument("--device: unknown device '" + d + "' (cpu, cuda or auto)");
}

gs::FitOptions fit_options(const Options& o) {
  gs::FitOptions f;
  f.min_width = o.fit_min_width;
  f.max_width = o.fit_max_width;
  f.bootstrap = o.bootstrap;
  if (f.max_width > 0 && f.max_width < f.min_width)
    throw std::invalid_argument("--fit-max-width " + std::to_string(f.max_width) + " is below --fit-min-width " +
                                std::to_string(f.min_width));
  return f;
}

}  // namespace gs
