// The extension _gpusweep under the Python package gpusweep: a sweep through the CLI's own
// option parser and run function, a finished run's files through the CLI's readers, and y(x)
// through network.h's evaluate. gpusweep/__init__.py is the interface on top.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/cli_options.h"
#include "cli/commands.h"
#include "gpusweep/io/output.h"
#include "gpusweep/io/params_io.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/model.h"
#include "gpusweep/model/network.h"
#include "gpusweep/solver/baselines.h"
#include "gpusweep/util/csv.h"
#include "gpusweep/util/text.h"
#include "gpusweep_version.h"

namespace py = pybind11;

namespace {

// A message as the CLI prints it after "gpu-sweep: error: ": one line, however odd the input.
std::string one_line(const std::string& what) { return gs::printable(what, 2000); }

// Bad input becomes ValueError (the CLI's exit status 2), anything else RuntimeError (1),
// each with the CLI's one-line message.
template <class F>
auto cli_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const CLI::ParseError& e) {
    throw py::value_error(one_line(e.what()));
  } catch (const std::invalid_argument& e) {
    throw py::value_error(one_line(e.what()));
  } catch (const py::error_already_set&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line(e.what()));
  }
}

// The sweep options of gpu-sweep's main command, on an App of their own (no --help).
struct SweepCli {
  gs::Options o;
  CLI::App app{"gpu-sweep"};
  SweepCli() {
    app.set_help_flag();
    gs::add_sweep_options(app, o);
  }
};

// The long names of the options that take no value (--overwrite, --quiet, --no-plots).
std::vector<std::string> sweep_flags() {
  SweepCli cli;
  std::vector<std::string> flags;
  for (const CLI::Option* opt : cli.app.get_options())
    if (opt->get_expected_max() == 0)
      for (const auto& name : opt->get_lnames()) flags.push_back("--" + name);
  return flags;
}

// SIGINT and SIGTERM handlers as they were (Python's own), put back when the sweep returns.
class SignalHandlers {
 public:
  SignalHandlers() {
    sigaction(SIGINT, nullptr, &int_);
    sigaction(SIGTERM, nullptr, &term_);
  }
  ~SignalHandlers() {
    sigaction(SIGINT, &int_, nullptr);
    sigaction(SIGTERM, &term_, nullptr);
  }
  SignalHandlers(const SignalHandlers&) = delete;
  SignalHandlers& operator=(const SignalHandlers&) = delete;

 private:
  struct sigaction int_ {};
  struct sigaction term_ {};
};

// A sweep from the CLI's arguments (without the program name); returns its directory.
// Ctrl-C stops it at the next Newton step as in the CLI, with the finished chunks saved, and
// raises KeyboardInterrupt.
std::string run_sweep(const std::vector<std::string>& args) {
  SweepCli cli;
  std::vector<const char*> argv{"gpu-sweep"};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    cli.app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {  // restyled as gpu-sweep's main restyles it
    throw py::value_error(one_line(gs::cli_error_message(e, cli.app)));
  }
  std::string out;
  int rc = 0;
  {
    py::gil_scoped_release unlocked;
    const SignalHandlers python_handlers;
    rc = cli_errors([&] { return gs::run(cli.o, cli.app, &out); });
    std::cout.flush();
  }
  if (rc == 130) {
    PyErr_SetString(PyExc_KeyboardInterrupt,
                    ("gpu-sweep interrupted; the finished networks are saved in " + out +
                     "; continue with gpusweep.sweep(resume=" + py::repr(py::str(out)).cast<std::string>() + ")")
                        .c_str());
    throw py::error_already_set();
  }
  return out;
}

// The columns that hold names, never numbers (a target may be the expression "2").
bool text_column(const std::string& name) {
  return name == "arch" || name == "activation" || name == "target" || name == "status" || name == "reason";
}
// The columns that hold measurements, numbers even where every value is a whole one (an exact
// fit's RMSE of 0).
bool real_column(const std::string& name) {
  return name == "train_rmse" || name == "test_rmse" || name == "scaled_gradient" ||
         name == "last_rel_decrease" || name == "seconds";
}

// A column of a CSV table as integers, or numbers, or else strings.
py::object column_values(const gs::CsvTable& t, int c) {
  const std::size_t rows = t.rows.size();
  const std::string& name = t.header[c];
  if (!text_column(name) && !real_column(name)) {
    try {
      py::array_t<std::int64_t> ints(static_cast<py::ssize_t>(rows));
      auto iv = ints.mutable_unchecked<1>();
      for (std::size_t r = 0; r < rows; ++r) iv(r) = gs::parse_int_field(t.rows[r][c], t.path);
      return std::move(ints);
    } catch (const std::invalid_argument&) {
    }
  }
  if (!text_column(name)) {
    try {
      py::array_t<double> nums(static_cast<py::ssize_t>(rows));
      auto nv = nums.mutable_unchecked<1>();
      for (std::size_t r = 0; r < rows; ++r) nv(r) = gs::parse_double_field(t.rows[r][c], t.path);
      return std::move(nums);
    } catch (const std::invalid_argument&) {
    }
  }
  py::list strs(rows);
  for (std::size_t r = 0; r < rows; ++r) strs[r] = py::str(t.rows[r][c]);
  return std::move(strs);
}

// A CSV file of gpu-sweep as (column name, values) pairs in the file's order.
std::vector<std::pair<std::string, py::object>> read_table(const std::string& path) {
  const gs::CsvTable t = cli_errors([&] { return gs::read_csv_table(path); });
  std::vector<std::pair<std::string, py::object>> cols;
  for (std::size_t c = 0; c < t.header.size(); ++c) cols.emplace_back(t.header[c], column_values(t, static_cast<int>(c)));
  return cols;
}

// results.csv, checked by the reader that `fit` and `plot` use, then as a table.
std::vector<std::pair<std::string, py::object>> read_results(const std::string& path) {
  cli_errors([&] { return gs::read_results_table(path); });
  return read_table(path);
}

// params_index.csv, checked by the CLI's reader, as a table.
std::vector<std::pair<std::string, py::object>> read_params_index(const std::string& dir) {
  cli_errors([&] { return gs::read_params_index(dir); });
  return read_table(dir + "/params_index.csv");
}

// Network i's parameters (row i of params_index.csv) from params.bin.
py::array_t<double> read_params(const std::string& dir, std::size_t offset, std::size_t count) {
  gs::ParamsEntry e;
  e.offset = offset;
  e.count = count;
  const std::vector<double> v = cli_errors([&] { return gs::read_params(dir, e); });
  return py::array_t<double>(static_cast<py::ssize_t>(v.size()), v.data());
}

// The network an --arch name, activation and input dimension give with `count` parameters.
gs::Shape network_shape(const std::string& arch, const std::string& activation, int d, std::size_t count) {
  return cli_errors([&] {
    const auto models = gs::parse_archs(arch);
    const auto acts = gs::parse_acts(activation);
    if (models.size() != 1) throw std::invalid_argument("arch: one architecture, not '" + arch + "'");
    if (acts.size() != 1) throw std::invalid_argument("activation: one activation, not '" + activation + "'");
    const gs::Model& m = models[0];
    if (m.method == gs::Method::kSpline)
      throw std::invalid_argument(gs::model_name(m) +
                                  ": its parameters are B-spline coefficients over the training range, not a "
                                  "network");
    if (d < 1 || d > gs::kMaxDim)
      throw std::invalid_argument("d: want 1.." + std::to_string(gs::kMaxDim) + ", not " + std::to_string(d));
    // The paper's and the spline constructions are relu networks whatever was asked for.
    const gs::Act act = m.method == gs::Method::kTrain ? acts[0] : gs::Act::kRelu;
    gs::Shape s{m.arch, act, d, 0};
    const std::size_t per_neuron = static_cast<std::size_t>(gs::neuron_num_params(s));
    if (count < 1 || (count - 1) % per_neuron != 0 || (count - 1) / per_neuron > static_cast<std::size_t>(gs::kMaxWidth))
      throw std::invalid_argument(gs::model_name(m) + " with d = " + std::to_string(d) + ": " +
                                  std::to_string(count) + " parameters is no network's count (" +
                                  std::to_string(per_neuron) + " n + 1 for width n)");
    s.n = static_cast<int>((count - 1) / per_neuron);
    return s;
  });
}

// (arch, activation, d, width) of a parameter vector of `count` values; see network_shape.
py::tuple network_info(const std::string& arch, const std::string& activation, int d, std::size_t count) {
  const gs::Shape s = network_shape(arch, activation, d, count);
  const auto models = gs::parse_archs(arch);
  return py::make_tuple(gs::model_name(models[0]), gs::act_name(s.act), s.d, s.n);
}

// y(x) at every row of x (N x d, row-major) by network.h's evaluate.
py::array_t<double> evaluate(const std::string& arch, const std::string& activation, int d,
                             py::array_t<double, py::array::c_style | py::array::forcecast> theta,
                             py::array_t<double, py::array::c_style | py::array::forcecast> x) {
  const gs::Shape s = network_shape(arch, activation, d, static_cast<std::size_t>(theta.size()));
  if (x.ndim() != 2 || x.shape(1) != d)
    throw py::value_error("x: want an N x " + std::to_string(d) + " array");
  const py::ssize_t n = x.shape(0);
  py::array_t<double> y(n);
  const double* th = theta.data();
  const double* xs = x.data();
  double* ys = y.mutable_data();
  {
    py::gil_scoped_release unlocked;
#pragma omp parallel for schedule(static) if (static_cast<double>(n) * s.n > 1e5)
    for (py::ssize_t k = 0; k < n; ++k) ys[k] = gs::evaluate(s, th, xs + k * d);
  }
  return y;
}

}  // namespace

PYBIND11_MODULE(_gpusweep, m) {
  m.doc() = "gpu-sweep's C++ side; use the package gpusweep";
  m.attr("version") = GPUSWEEP_VERSION;
  m.attr("commit") = GPUSWEEP_COMMIT;
  m.def("option_of", &gs::option_of, "the option of a sweep key: data_seed -> --data-seed");
  m.def("sweep_flags", &sweep_flags, "the sweep options that take no value");
  m.def("run_sweep", &run_sweep, py::arg("args"),
        "runs gpu-sweep's main command with these arguments (no program name); returns its directory");
  m.def("read_table", &read_table, py::arg("path"), "a CSV file of gpu-sweep as (column, values) pairs");
  m.def("read_results", &read_results, py::arg("path"), "results.csv as (column, values) pairs");
  m.def("read_params_index", &read_params_index, py::arg("dir"), "DIR/params_index.csv as (column, values) pairs");
  m.def("read_params", &read_params, py::arg("dir"), py::arg("offset"), py::arg("count"),
        "count float64 values at offset (in values) of DIR/params.bin");
  m.def("network_info", &network_info, py::arg("arch"), py::arg("activation"), py::arg("d"), py::arg("count"),
        "(arch, activation, d, width) of a network with count parameters");
  m.def("evaluate", &evaluate, py::arg("arch"), py::arg("activation"), py::arg("d"), py::arg("theta"),
        py::arg("x"), "y(x) for each row of x (N x d)");
}
