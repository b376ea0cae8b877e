// The sweep's figures of a results directory: the scaling figure (test RMSE against P with the
// fitted lines), and for chosen networks the fitted function with its error and each neuron's
// contribution (1D inputs) or heat maps with the hinge lines (2D inputs). gnuplot.h draws them.
#include "gpusweep/figures/plots.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "figures/gnuplot.h"
#include "gpusweep/io/output.h"
#include "gpusweep/io/params_io.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/network.h"
#include "gpusweep/util/text.h"
#include "gpusweep/util/util.h"

namespace fs = std::filesystem;

namespace gs {

namespace {

constexpr int kGrid = 2001;         // points of the fine grid the curves are drawn on
constexpr int kNeuronGrid = 501;    // coarser for the neurons figure (n curves), plus the knots
constexpr int kMaxNeuronKey = 12;   // neurons figure: a key entry per neuron up to this width

std::string fixed(double v, int digits) {
  char b[40];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string sci(double v) {
  char b[40];
  std::snprintf(b, sizeof b, "%.2e", v);
  return b;
}

// Tick marks of a log axis over [lo, hi]: powers of ten when it spans many decades, else 1, 2
// and 5 times them, so that a narrow range still has labels.
std::string log_tics(const char* axis, double lo, double hi) {
  // Only a positive, finite range has decades to label (and ints for its exponents).
  if (!(lo > 0.0 && hi > lo && std::isfinite(hi) && hi < 1e300 && lo > 1e-300)) return "";
  const double decades = std::log10(hi / lo);
  const std::vector<double> mant = decades > 3.0 ? std::vector<double>{1.0}
                                   : decades > 1.2 ? std::vector<double>{1.0, 3.0}
                                                   : std::vector<double>{1.0, 2.0, 5.0};
  std::ostringstream os;
  os << "set " << axis << "tics (";
  int k = 0;
  for (int e = static_cast<int>(std::floor(std::log10(lo))); e <= static_cast<int>(std::ceil(std::log10(hi))); ++e)
    for (double m : mant) {
      const double v = m * std::pow(10.0, e);
      if (v < lo || v > hi) continue;
      char label[32];
      if (decades > 3.0) std::snprintf(label, sizeof label, "10^{%d}", e);
      else std::snprintf(label, sizeof label, "%g", v);
      os << (k++ ? ", " : "") << "'" << label << "' " << num(v);
    }
  os << ")\n";
  return k >= 2 ? os.str() : std::string();
}

// ---- reading the directory ---------------------------------------------------------------

// results.csv, through the reader that `gpu-sweep fit` uses.
std::vector<FitRow> read_results(const std::string& dir) {
  const std::string path = (fs::path(dir) / "results.csv").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_results_csv(ss.str(), path);
}

nlohmann::json read_summary(const std::string& dir) {
  const std::string path = (fs::path(dir) / "summary.json").string();
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot open the file");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    throw std::invalid_argument(path + ": not valid JSON (" + what + ")");
  }
  if (!j.is_object()) throw std::invalid_argument(path + ": not a JSON object");
  return j;
}

// ---- figures -------------------------------------------------------------------------------

// The scaling figure: per (arch, activation, target) the median test RMSE over seeds at each
// P with a min-max band, the fitted line from summary.json, the slope in the key. With
// effective, the same against the effective parameter count (figure scaling_effective, the
// fits vs_effective_params).
void scaling_figure(const std::vector<FitRow>& rows, const nlohmann::json& summary, Work* w,
                    PlotReport* rep, bool effective = false) {
  const char* fit_key = effective ? "vs_effective_params" : "vs_params";
  const char* list_key = effective ? "effective_params" : "params";
  const std::string name = effective ? "scaling_effective" : "scaling";
  using Key = std::tuple<std::string, std::string, std::string>;
  std::vector<Key> order;
  std::map<Key, std::map<double, std::vector<double>>> by_p;  // group -> P -> RMSEs
  std::map<Key, std::map<double, int>> width_of;
  std::set<std::string> acts, targets;
  int seeds = 0;
  for (const auto& r : rows) {
    const Key k{r.arch, r.activation, r.target};
    if (!by_p.count(k)) order.push_back(k);
    auto& g = by_p[k];
    acts.insert(r.activation);
    targets.insert(r.target);
    seeds = std::max(seeds, r.seed + 1);
    const double x = effective ? r.effective_params : r.params;
    width_of[k][x] = r.width;
    if (!r.failed && std::isfinite(r.test_rmse) && r.test_rmse > 0.0) g[x].push_back(r.test_rmse);
  }
  const nlohmann::json fits = summary.contains("fits") && summary["fits"].is_array() ? summary["fits"]
                                                                                     : nlohmann::json::array();
  const double min_width = json_number(summary, "fit_min_width", 1.0);
  std::ostringstream plot;
  int gi = 0, drawn = 0;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& k : order) {
    const auto& [arch, act, target] = k;
    const auto& g = by_p[k];
    if (g.empty()) {
      if (!effective)
        rep->notes.push_back("scaling figure: " + arch + " " + act + " " + target + " has no positive RMSE; left out");
      continue;
    }
    const std::string colour = kColours[gi++ % (sizeof kColours / sizeof kColours[0])];
    std::string label = arch;
    if (acts.size() > 1) label += " " + act;
    if (targets.size() > 1) label += " " + target;
    std::ostringstream dat;
    for (const auto& [p, v] : g) {
      std::vector<double> s = v;
      std::sort(s.begin(), s.end());
      const std::size_t m = s.size();
      const double med = m % 2 ? s[m / 2] : 0.5 * (s[m / 2 - 1] + s[m / 2]);
      dat << num(p) << ' ' << num(med) << ' ' << num(s.front()) << ' ' << num(s.back()) << '\n';
      xlo = std::min(xlo, p), xhi = std::max(xhi, p), ylo = std::min(ylo, s.front()), yhi = std::max(yhi, s.back());
    }
    const std::string file = name + "_" + std::to_string(gi) + ".dat";
    w->data[file] = dat.str();
    // The fit of this group, if summary.json has one.
    const nlohmann::json* fit = nullptr;
    for (const auto& f : fits)
      if (json_string(f, "arch", "") == arch && json_string(f, "activation", "") == act &&
          json_string(f, "target", "") == target)
        fit = &f;
    std::string key_text = label;
    std::string fit_file;
    if (fit && fit->value("ok", true) && fit->contains(fit_key) && (*fit)[fit_key].contains("slope") &&
        (*fit)[fit_key]["slope"].is_number()) {
      const auto& vp = (*fit)[fit_key];
      const double slope = vp["slope"].get<double>();
      // The P range of the fit: the P of summary.json's fit_widths; in a summary from before
      // those, its list of P (then only the fit's); else the widths from fit_min_width on.
      double plo = INFINITY, phi = -INFINITY;
      if (fit->contains("fit_widths") && (*fit)["fit_widths"].is_array()) {
        std::set<double> in_fit;
        for (const auto& wj : (*fit)["fit_widths"])
          if (wj.is_number()) in_fit.insert(wj.get<double>());
        for (const auto& [p, v] : g)
          if (in_fit.count(width_of[k][p])) plo = std::min(plo, p), phi = std::max(phi, p);
      } else if (fit->contains(list_key) && (*fit)[list_key].is_array()) {
        for (const auto& p : (*fit)[list_key])
          if (p.is_number()) plo = std::min(plo, p.get<double>()), phi = std::max(phi, p.get<double>());
      }
      if (!(plo < phi))
        for (const auto& [p, v] : g)
          if (width_of[k][p] >= min_width) plo = std::min(plo, p), phi = std::max(phi, p);
      // The intercept of log(RMSE) = b + slope log(P); when absent, the one that best fits the
      // medians with this slope.
      double b = json_number(vp, "intercept", NAN);
      if (!std::isfinite(b)) {
        double sum = 0.0;
        int cnt = 0;
        std::istringstream in(dat.str());
        double p, med, lo, hi;
        while (in >> p >> med >> lo >> hi)
          if (p >= plo && p <= phi) sum += std::log(med) - slope * std::log(p), ++cnt;
        b = cnt ? sum / cnt : NAN;
      }
      key_text += ": median-curve slope " + fixed(slope, 2);
      if (std::isfinite(b) && plo < phi) {
        fit_file = name + "_fit_" + std::to_string(gi) + ".dat";
        std::ostringstream fd;
        for (int t = 0; t <= 20; ++t) {
          const double p = std::exp(std::log(plo) + (std::log(phi) - std::log(plo)) * t / 20.0);
          const double y = std::exp(b + slope * std::log(p));
          fd << num(p) << ' ' << num(y) << '\n';
          ylo = std::min(ylo, y), yhi = std::max(yhi, y);
        }
        w->data[fit_file] = fd.str();
      }
    } else {
      key_text += ": no fit";
    }
    plot << (drawn++ ? ", \\\n     " : "plot ") << gq(file) << " using 1:3:4 with filledcurves lc rgb " << gq(colour)
         << " fs transparent solid 0.18 noborder notitle, \\\n     " << gq(file)
         << " using 1:2 with linespoints lw 2 pt 7 ps 0.7 lc rgb " << gq(colour) << " title " << gq(key_text);
    if (!fit_file.empty())
      plot << ", \\\n     " << gq(fit_file) << " using 1:2 with lines lw 1.5 dt (8,5) lc rgb " << gq(colour)
           << " notitle";
  }
  if (!drawn) {
    if (!effective) rep->notes.push_back("scaling figure: no network has a positive test RMSE; not drawn");
    return;
  }
  std::string title = effective ? "Test RMSE against effective parameters" : "Test RMSE against parameters P";
  if (acts.size() == 1) title += ", " + *acts.begin();
  if (targets.size() == 1) title += ", target " + *targets.begin();
  std::string sub = seeds > 1 ? "line: median over " + std::to_string(seeds) + " seeds, band: min to max; "
                              : "one seed; ";
  sub += "dashed: log-log fit of the median curve, widths >= " + std::to_string(static_cast<int>(min_width));
  std::ostringstream b;
  b << "set title " << gqq(title + "\n" + sub) << " noenhanced\n"
    << "set logscale xy\nset format x '10^{%L}'\nset format y '10^{%L}'\n"
    << "set xrange [" << num(xlo / 1.12) << ":" << num(xhi * 1.12) << "]\n"
    << "set yrange [" << num(ylo / 1.5) << ":" << num(yhi * 1.3) << "]\n"
    << log_tics("x", xlo / 1.12, xhi * 1.12) << log_tics("y", ylo / 1.5, yhi * 1.3)
    << "set mxtics 10\nset mytics 10\nset grid xtics ytics mxtics mytics lc rgb '#dddddd', lc rgb '#f3f3f3'\n"
    << "set xlabel '" << (effective ? "effective parameters (P less the symmetries)" : "parameters P")
    << "'\nset ylabel 'test RMSE'\n"
    << (drawn <= 4 ? "set key bottom left Left reverse box opaque noenhanced spacing 1.2 width 1\n"
                   : "set key below Left reverse noenhanced spacing 1.2 width 2\n")
    << plot.str() << "\n";
  const std::string body = b.str();
  w->figures.push_back(Figure{name, 1000, drawn <= 4 ? 700 : 700 + 25 * ((drawn + 1) / 2), body});
}

// What the per-network figures compare against: the target on a fine grid (built-in names
// and expressions) or the data points of a --data run.
struct Reference {
  bool ok = false;
  bool grid = false;  // x, y on a fine grid; else scattered data points
  std::vector<double> x, y;
  double lo = -1.0, hi = 1.0;
  std::string note;
};

// The dataset of a run's target as the run had it: its --data file, read with the run's
// options, or the target sampled at `points` (only its test points and f are used).
bool is_data_run(const std::string& target, const nlohmann::json& config) {
  const std::string data = json_string(config, "data", "");
  return !data.empty() && data == target;
}

Dataset rebuild_dataset(const std::string& target, const nlohmann::json& config, int points) {
  const auto seed = static_cast<std::uint64_t>(json_number(config, "data_seed", 0.0));
  if (is_data_run(target, config)) {
    // The file where the run found it: a relative --data is relative to the run's directory.
    std::string file = target;
    if (config.contains("data_file") && config["data_file"].is_object())
      file = json_string(config["data_file"], "path", target);
    return csv_dataset(read_data_file(file, target), target, json_number(config, "test_fraction", 0.2), seed,
                       json_string(config, "standardize", "on") != "off");
  }
  return make_target_dataset(target, points, seed, static_cast<int>(json_number(config, "dim", 0.0)));
}

std::string rebuild_failed(const std::string& target, const std::exception& e) {
  return "cannot rebuild the target '" + target + "' (" + e.what() + "); drawing the network alone";
}

// A per-network figure's file-name tag and title.
std::string figure_tag(const ParamsEntry& e) {
  // A --data run's target is its file's path; its name is enough for a file name.
  const std::string target = e.target.find('/') != std::string::npos ? fs::path(e.target).filename().string()
                                                                     : e.target;
  return e.arch + "_" + e.activation + "_" + slug(target) + "_n" + std::to_string(e.width) + "_s" +
         std::to_string(e.seed);
}

std::string figure_title(const ParamsEntry& e, const Shape& s, double test_rmse) {
  std::string title = e.arch + " " + e.activation + ", target " + e.target + ", width " + std::to_string(e.width) +
                      " (P = " + std::to_string(num_params(s)) + "), seed " + std::to_string(e.seed);
  if (std::isfinite(test_rmse)) title += ", test RMSE " + sci(test_rmse);
  return title;
}

Reference make_reference(const std::string& target, const nlohmann::json& config) {
  Reference ref;
  try {
    if (is_data_run(target, config)) {
      const Dataset ds = rebuild_dataset(target, config, 0);
      ref.x = ds.x_train;
      ref.y = ds.y_train;
      ref.x.insert(ref.x.end(), ds.x_test.begin(), ds.x_test.end());
      ref.y.insert(ref.y.end(), ds.y_test.begin(), ds.y_test.end());
      std::vector<std::size_t> idx(ref.x.size());
      for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return ref.x[a] < ref.x[b]; });
      std::vector<double> xs, ys;
      for (auto i : idx) xs.push_back(ref.x[i]), ys.push_back(ref.y[i]);
      ref.x = xs;
      ref.y = ys;
      ref.lo = ref.x.front();
      ref.hi = ref.x.back();
    } else {
      const Dataset ds = rebuild_dataset(target, config, kGrid);
      ref.x = ds.x_test;
      ref.y = ds.y_test;
      ref.grid = true;
    }
    ref.ok = true;
  } catch (const std::exception& e) {
    ref.note = rebuild_failed(target, e);
  }
  return ref;
}

// Where neuron i's gate crosses zero, when that is inside [lo, hi] (1D).
std::vector<double> cell_boundaries(const Shape& s, const std::vector<double>& th, double lo, double hi) {
  std::vector<double> k;
  for (int i = 0; i < s.n; ++i) {
    const double G = th[factor_offset(s, 0) + i], g = th[factor_offset(s, 0) + s.n + i];
    if (G != 0.0) {
      const double x = -g / G;
      if (x > lo && x < hi) k.push_back(x);
    }
  }
  std::sort(k.begin(), k.end());
  return k;
}

std::string boundary_arrows(const std::vector<double>& knots) {
  std::ostringstream os;
  for (double x : knots)
    os << "set arrow from " << num(x) << ", graph 0 to " << num(x)
       << ", graph 1 nohead back lw 1 dt (4,4) lc rgb '#999999'\n";
  return os.str();
}

// The fitted function over the target with the cell boundaries, and the error below; and each
// neuron's contribution.
void network_figures(const ParamsEntry& e, const Shape& s, const std::vector<double>& th,
                     const Reference& ref, double test_rmse, Work* w) {
  const std::string tag = figure_tag(e);
  const double lo = ref.lo, hi = ref.hi;
  std::vector<double> gx(kGrid);
  for (int k = 0; k < kGrid; ++k) gx[k] = lo + (hi - lo) * k / (kGrid - 1);
  if (ref.ok && ref.grid) gx = ref.x;
  const auto knots = cell_boundaries(s, th, lo, hi);
  const std::string arrows = boundary_arrows(knots);
  const std::string title = figure_title(e, s, test_rmse);

  // Fitted function and error.
  {
    std::ostringstream d, err;
    for (std::size_t k = 0; k < gx.size(); ++k) {
      const double y = evaluate(s, th.data(), &gx[k]);
      d << num(gx[k]) << ' ' << num(y);
      if (ref.ok && ref.grid) d << ' ' << num(ref.y[k]) << ' ' << num(y - ref.y[k]);
      d << '\n';
    }
    if (ref.ok && !ref.grid)
      for (std::size_t k = 0; k < ref.x.size(); ++k)
        err << num(ref.x[k]) << ' ' << num(ref.y[k]) << ' ' << num(evaluate(s, th.data(), &ref.x[k]) - ref.y[k])
            << '\n';
    const std::string f = "fit_" + tag + ".dat", fe = "fit_" + tag + "_data.dat";
    w->data[f] = d.str();
    if (ref.ok && !ref.grid) w->data[fe] = err.str();
    std::ostringstream b;
    b << "set multiplot title " << gq(title) << " noenhanced\n"
      << "set lmargin at screen 0.11\nset rmargin at screen 0.97\n"
      << "set tmargin at screen 0.88\nset bmargin at screen 0.40\n"
      << "set xrange [" << num(lo) << ":" << num(hi) << "]\nset format x ''\nunset xlabel\n"
      << "set ylabel 'y'\nset grid lc rgb '#eeeeee'\n"
      << "set key horizontal center top at screen 0.54, screen 0.935 noenhanced samplen 3\n" << arrows
      << "plot ";
    if (ref.ok && ref.grid)
      b << gq(f) << " using 1:3 with lines lw 4 lc rgb '#bbbbbb' title 'target f', ";
    if (ref.ok && !ref.grid)
      b << gq(fe) << " using 1:2 with points pt 7 ps 0.3 lc rgb '#888888' title 'data', ";
    b << gq(f) << " using 1:2 with lines lw 1.5 lc rgb '#d62728' title 'network y'";
    if (!knots.empty()) b << ", NaN with lines lw 1 dt (4,4) lc rgb '#999999' title 'cell boundaries'";
    b << "\nunset key\nset tmargin at screen 0.36\nset bmargin at screen 0.09\n"
      << "set format x '%g'\nset xlabel 'x'\nset format y '%g'\n";
    if (ref.ok && ref.grid)
      b << "set ylabel 'error y - f'\nplot " << gq(f) << " using 1:4 with lines lw 1.2 lc rgb '#1f77b4'\n";
    else if (ref.ok)
      b << "set ylabel 'error y - data'\nplot " << gq(fe) << " using 1:3 with points pt 7 ps 0.3 lc rgb '#1f77b4'\n";
    else
      b << "set ylabel 'error'\nset label 1 'target not available' at graph 0.5, graph 0.5 center\n"
        << "plot NaN notitle\n";
    b << "unset multiplot\n";
    w->figures.push_back(Figure{"fit_" + tag, 1000, 750, b.str()});
  }

  // One curve per neuron: D_i s(a_i0) prod a_ib.
  {
    // The curves are polynomial between knots, so a coarse grid with the knots added is exact
    // at the kinks and keeps the SVG small at large widths.
    std::vector<double> nx(knots);
    for (int k = 0; k < kNeuronGrid; ++k) nx.push_back(lo + (hi - lo) * k / (kNeuronGrid - 1));
    std::sort(nx.begin(), nx.end());
    std::ostringstream d;
    for (double x : nx) {
      d << num(x);
      double sum = 0.0;
      for (int i = 0; i < s.n; ++i) {
        const NeuronEval ne = eval_neuron(s, th.data(), &x, i);
        const double c = ne.q * ne.g.s * ne.m;
        sum += c;
        d << ' ' << num(c);
      }
      d << ' ' << num(sum) << '\n';
    }
    const std::string f = "neurons_" + tag + ".dat";
    w->data[f] = d.str();
    std::string ylabel = poly_degree(s.arch) > 0 ? "s(G_i x + g_i) p_i(x)" : "D_i s(G_i x + g_i)";
    for (int fb = 1; fb < num_factors(s.arch); ++fb) {
      const std::string up = kFactorNames[fb];
      ylabel += " (" + up + "_i x + " + static_cast<char>(std::tolower(up[0])) + "_i)";
    }
    std::ostringstream b;
    b << "set title " << gq("Neuron contributions: " + title) << " noenhanced\n"
      << "set xrange [" << num(lo) << ":" << num(hi) << "]\nset xlabel 'x'\nset ylabel " << gq(ylabel) << "\n"
      << "set grid lc rgb '#eeeeee'\n" << (s.n <= kMaxNeuronKey ? arrows : std::string())
      << (s.n <= kMaxNeuronKey ? "set key outside right top Left reverse noenhanced\n"
                               : "set key below Left reverse noenhanced height 1.5\n")
      << "colours = '";
    for (const char* c : kColours) b << c << ' ';
    b << "'\n"
      << "plot for [i=2:" << s.n + 1 << "] " << gq(f)
      << " using 1:i with lines lw 1.5 lc rgb word(colours, (i-2)%words(colours)+1) title "
      << (s.n <= kMaxNeuronKey ? "sprintf('neuron %d', i-2)" : "''") << ", \\\n     " << gq(f) << " using 1:"
      << s.n + 2 << " with lines lw 2.5 dt (6,4) lc rgb 'black' title 'sum (y - d0)'\n";
    w->figures.push_back(Figure{"neurons_" + tag, 1000, 650, b.str()});
  }
}

// ---- 2D inputs ------------------------------------------------------------------------------

constexpr int kGrid2d = 121;  // grid side of the 2D heat maps

// What a 2D figure compares against: the target on a grid over its box, or the points of a
// --data run.
struct Reference2d {
  bool ok = false;
  bool grid = false;  // f on the kGrid2d x kGrid2d grid; else scattered data points
  std::vector<double> x, f;  // points (x, y pairs) and values
  double lo[2] = {-1.0, -1.0}, hi[2] = {1.0, 1.0};
  std::string note;
};

Reference2d make_reference_2d(const std::string& target, const nlohmann::json& config) {
  Reference2d ref;
  try {
    const Dataset ds = rebuild_dataset(target, config, 4);
    if (is_data_run(target, config)) {
      if (ds.d != 2) throw std::invalid_argument("the data have d = " + std::to_string(ds.d));
      ref.x = ds.x_train;
      ref.f = ds.y_train;
      if (ds.x_test != ds.x_train) {
        ref.x.insert(ref.x.end(), ds.x_test.begin(), ds.x_test.end());
        ref.f.insert(ref.f.end(), ds.y_test.begin(), ds.y_test.end());
      }
      for (int j = 0; j < 2; ++j) {
        ref.lo[j] = ref.hi[j] = ref.x[j];
        for (std::size_t k = j; k < ref.x.size(); k += 2) {
          ref.lo[j] = std::min(ref.lo[j], ref.x[k]);
          ref.hi[j] = std::max(ref.hi[j], ref.x[k]);
        }
      }
    } else {
      if (ds.d != 2) throw std::invalid_argument("the target has d = " + std::to_string(ds.d));
      for (int j = 0; j < 2; ++j) {
        ref.lo[j] = ds.lo[j];
        ref.hi[j] = ds.hi[j];
      }
      for (int i = 0; i < kGrid2d; ++i)
        for (int k = 0; k < kGrid2d; ++k) {
          ref.x.push_back(ref.lo[0] + (ref.hi[0] - ref.lo[0]) * k / (kGrid2d - 1));
          ref.x.push_back(ref.lo[1] + (ref.hi[1] - ref.lo[1]) * i / (kGrid2d - 1));
        }
      ref.f = evaluate_target(ds, ref.x);
      ref.grid = true;
    }
    ref.ok = true;
  } catch (const std::exception& e) {
    ref.note = rebuild_failed(target, e);
  }
  return ref;
}

// The part of the line a0 x + a1 y + c = 0 inside the box, as a gnuplot arrow; "" when the
// line misses the box.
std::string hinge_arrow(double a0, double a1, double c, const double lo[2], const double hi[2]) {
  std::vector<std::pair<double, double>> p;
  const double eps = 1e-12 * (1.0 + std::fabs(hi[0] - lo[0]) + std::fabs(hi[1] - lo[1]));
  if (a1 != 0.0)
    for (double x : {lo[0], hi[0]}) {
      const double y = -(a0 * x + c) / a1;
      if (y >= lo[1] - eps && y <= hi[1] + eps) p.push_back({x, y});
    }
  if (a0 != 0.0)
    for (double y : {lo[1], hi[1]}) {
      const double x = -(a1 * y + c) / a0;
      if (x >= lo[0] - eps && x <= hi[0] + eps) p.push_back({x, y});
    }
  if (p.size() < 2) return "";
  // The two intersections farthest apart (a corner can appear twice).
  std::size_t a = 0, b = 1;
  double best = -1.0;
  for (std::size_t i = 0; i < p.size(); ++i)
    for (std::size_t j = i + 1; j < p.size(); ++j) {
      const double d = std::hypot(p[i].first - p[j].first, p[i].second - p[j].second);
      if (d > best) best = d, a = i, b = j;
    }
  if (best <= eps) return "";
  return "set arrow from " + num(p[a].first) + "," + num(p[a].second) + " to " + num(p[b].first) + "," +
         num(p[b].second) + " nohead front lw 0.8 dt (4,3) lc rgb '#333333'\n";
}

// A network on 2D inputs: its output as a heat map and its error against the target (or at
// the data points), both with the gates' hinge lines G_i x + g_i = 0.
void network_figure_2d(const ParamsEntry& e, const Shape& s, const std::vector<double>& th, const Reference2d& ref,
                       double test_rmse, Work* w) {
  const std::string tag = figure_tag(e);
  const std::string title = figure_title(e, s, test_rmse);
  std::string arrows;
  for (int i = 0; i < s.n; ++i) {
    const double* G = th.data() + factor_offset(s, 0) + i * 2;
    arrows += hinge_arrow(G[0], G[1], th[factor_offset(s, 0) + s.n * 2 + i], ref.lo, ref.hi);
  }
  // The network on the grid (the reference's own grid when it has one), then the error.
  std::ostringstream d, pts;
  double emax = 0.0;
  for (int i = 0; i < kGrid2d; ++i) {
    for (int k = 0; k < kGrid2d; ++k) {
      const double x[2] = {ref.lo[0] + (ref.hi[0] - ref.lo[0]) * k / (kGrid2d - 1),
                           ref.lo[1] + (ref.hi[1] - ref.lo[1]) * i / (kGrid2d - 1)};
      const double y = evaluate(s, th.data(), x);
      d << num(x[0]) << ' ' << num(x[1]) << ' ' << num(y);
      if (ref.ok && ref.grid) {
        const double err = y - ref.f[static_cast<std::size_t>(i) * kGrid2d + k];
        emax = std::max(emax, std::fabs(err));
        d << ' ' << num(err);
      }
      d << '\n';
    }
    d << '\n';
  }
  if (ref.ok && !ref.grid)
    for (std::size_t k = 0; k < ref.f.size(); ++k) {
      const double err = evaluate(s, th.data(), &ref.x[2 * k]) - ref.f[k];
      emax = std::max(emax, std::fabs(err));
      pts << num(ref.x[2 * k]) << ' ' << num(ref.x[2 * k + 1]) << ' ' << num(err) << '\n';
    }
  if (!(emax > 0.0) || !std::isfinite(emax)) emax = 1.0;
  const std::string f = "fit_" + tag + ".dat", fe = "fit_" + tag + "_data.dat";
  w->data[f] = d.str();
  if (ref.ok && !ref.grid) w->data[fe] = pts.str();
  std::ostringstream b;
  b << "set multiplot layout 1,2 title " << gq(title) << " noenhanced\n"
    << "set size ratio -1\nset xrange [" << num(ref.lo[0]) << ":" << num(ref.hi[0]) << "]\n"
    << "set yrange [" << num(ref.lo[1]) << ":" << num(ref.hi[1]) << "]\n"
    << "set xlabel 'x1'\nset ylabel 'x2'\n" << arrows
    << "set palette defined (0 '#440154', 1 '#31688e', 2 '#35b779', 3 '#fde725')\n"
    << "set title 'network y, hinges G_i x + g_i = 0' noenhanced\n"
    << "plot " << gq(f) << " using 1:2:3 with image notitle\n"
    << "set palette defined (-1 '#2166ac', 0 '#f7f7f7', 1 '#b2182b')\nset cbrange [" << num(-emax) << ":"
    << num(emax) << "]\n";
  if (ref.ok && ref.grid)
    b << "set title 'error y - f'\nplot " << gq(f) << " using 1:2:4 with image notitle\n";
  else if (ref.ok)
    b << "set title 'error y - data'\nplot " << gq(fe) << " using 1:2:3 with points pt 7 ps 0.4 palette notitle\n";
  else
    b << "set title 'target not available'\nplot NaN notitle\n";
  b << "unset multiplot\n";
  w->figures.push_back(Figure{"fit_" + tag, 1300, 620, b.str()});
}

}  // namespace

std::vector<NetPick> parse_net_picks(const std::string& text) {
  std::vector<NetPick> picks;
  for (const auto& item : split_list(text, ',')) {
    const auto parts = split_list(item, ':');
    NetPick p;
    bool ok = parts.size() == 3 && !parts[0].empty();
    if (ok) {
      p.arch = parts[0];
      try {
        std::size_t u1 = 0, u2 = 0;
        p.width = std::stoi(parts[1], &u1);
        p.seed = std::stoi(parts[2], &u2);
        ok = u1 == parts[1].size() && u2 == parts[2].size() && p.width >= 1 && p.seed >= 0;
      } catch (const std::exception&) {
        ok = false;
      }
    }
    if (!ok) throw std::invalid_argument("--nets: '" + item + "' is not arch:width:seed (e.g. glu:16:0)");
    picks.push_back(p);
  }
  if (picks.empty()) throw std::invalid_argument("--nets: no networks given (e.g. glu:16:0,mlp:16:0)");
  return picks;
}

namespace {
PlotReport draw_run(const std::string& dir, const std::vector<NetPick>& picks, bool scaling_only) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::invalid_argument(dir + ": no such directory");
  if (!fs::exists(fs::path(dir) / "results.csv", ec))
    throw std::invalid_argument(dir + ": no results.csv (not a gpu-sweep output directory?)");
  PlotReport rep;
  const auto rows = read_results(dir);
  const nlohmann::json summary = read_summary(dir);
  const nlohmann::json config = summary.contains("config") ? summary["config"] : nlohmann::json::object();

  Work w;
  scaling_figure(rows, summary, &w, &rep);
  // Against the effective parameters too, when results.csv has them (runs before the column
  // have none).
  if (!rows.empty() && std::all_of(rows.begin(), rows.end(), [](const FitRow& r) { return r.effective_params > 0; }))
    scaling_figure(rows, summary, &w, &rep, true);

  // The networks of the per-network figures.
  const bool have_params = fs::exists(fs::path(dir) / "params_index.csv", ec);
  if (!have_params && !picks.empty())
    throw std::invalid_argument(dir + ": no params_index.csv, so no network can be drawn (--nets)");
  if (!have_params && !scaling_only) rep.notes.push_back(dir + " has no params_index.csv; drew the scaling figure only");
  if (have_params && !scaling_only) {
    const auto index = read_params_index(dir);
    std::vector<NetPick> chosen = picks;
    if (chosen.empty()) {
      std::vector<std::string> archs;
      for (const auto& e : index)  // spline coefficients are no network: not drawn by default
        if (e.factors > 0 && std::find(archs.begin(), archs.end(), e.arch) == archs.end()) archs.push_back(e.arch);
      for (const auto& a : archs) {
        int seed = -1, width = 0;
        for (const auto& e : index)
          if (e.arch == a && (seed < 0 || e.seed < seed)) seed = e.seed;
        if (seed > 0) seed = std::min(seed, 0);
        for (const auto& e : index)
          if (e.arch == a && e.seed == seed) width = std::max(width, e.width);
        chosen.push_back(NetPick{a, width, seed});
      }
    }
    std::map<std::string, Reference> refs;
    std::map<std::string, Reference2d> refs2d;
    for (const auto& p : chosen) {
      int matched = 0;
      for (const auto& e : index) {
        if (e.arch != p.arch || e.width != p.width || e.seed != p.seed) continue;
        ++matched;
        const std::string who = e.arch + ":" + std::to_string(e.width) + ":" + std::to_string(e.seed) + " (" +
                                e.activation + ", " + e.target + ")";
        Shape s;
        if (!entry_shape(e, &s)) {
          rep.notes.push_back(who + ": no mlp/glu/gqu parameter layout to draw");
          continue;
        }
        if (s.d > 2) {
          rep.notes.push_back(who + ": inputs of dimension " + std::to_string(s.d) +
                              "; the per-network figures are drawn for 1D and 2D inputs");
          continue;
        }
        const auto th = read_params(dir, e);
        if (!std::all_of(th.begin(), th.end(), [](double v) { return std::isfinite(v); })) {
          rep.notes.push_back(who + ": parameters are not finite; not drawn");
          continue;
        }
        double rmse = NAN;
        for (const auto& r : rows)
          if (r.arch == e.arch && r.activation == e.activation && r.target == e.target && r.width == e.width &&
              r.seed == e.seed)
            rmse = r.test_rmse;
        if (s.d == 2) {
          if (!refs2d.count(e.target)) {
            refs2d[e.target] = make_reference_2d(e.target, config);
            if (!refs2d[e.target].ok) rep.notes.push_back(refs2d[e.target].note);
          }
          network_figure_2d(e, s, th, refs2d[e.target], rmse, &w);
          continue;
        }
        if (!refs.count(e.target)) {
          refs[e.target] = make_reference(e.target, config);
          if (!refs[e.target].ok) rep.notes.push_back(refs[e.target].note);
        }
        network_figures(e, s, th, refs[e.target], rmse, &w);
      }
      if (!matched)
        throw std::invalid_argument("--nets " + p.arch + ":" + std::to_string(p.width) + ":" +
                                    std::to_string(p.seed) + ": no such network in " +
                                    (fs::path(dir) / "params_index.csv").string());
    }
  }
  if (w.figures.empty()) throw std::invalid_argument(dir + ": nothing to plot");

  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty())
    throw GnuplotMissing("gnuplot not found on PATH, so no plots were written (install gnuplot-nox, then run: "
                         "gpu-sweep plot " + dir + ")");
  rep.files = render(w, fs::path(dir) / "plots", gnuplot);
  return rep;
}
}  // namespace

PlotReport plot_run(const std::string& dir, const std::vector<NetPick>& picks) { return draw_run(dir, picks, false); }

PlotReport plot_scaling(const std::string& dir) { return draw_run(dir, {}, true); }

}  // namespace gs
