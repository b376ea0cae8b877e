// The figures of a `gpu-sweep ntk` directory: the condition number against d and against
// width, the eigenvalue histograms of the archs overlaid, and with dynamics the median loss
// curves with the crossing marked. gnuplot.h draws them.
#include "gpusweep/figures/plots.h"

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "figures/gnuplot.h"
#include "gpusweep/util/csv.h"
#include "gpusweep/util/util.h"

namespace fs = std::filesystem;

namespace gs {

namespace {

std::string colour_of(int k) { return kColours[k % (sizeof kColours / sizeof kColours[0])]; }

// Condition number (median over seeds, bars from min to max) against a variable of
// summary.json's groups (at initialization), one line per group of the other keys.
void ntk_cond_figure(const nlohmann::json& summary, const std::string& var, const std::string& label,
                     const std::string& name, Work* w, PlotReport* rep) {
  std::map<std::string, std::map<double, std::array<double, 3>>> lines;  // key -> x -> med, lo, hi
  std::vector<std::string> order;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& g : summary["groups"]) {
    if (json_string(g, "when", "") != "init" || !g["cond_median"].is_number()) continue;
    std::string key = json_string(g, "arch", "?") + " " + json_string(g, "activation", "?");
    if (var != "d") key += ", d = " + std::to_string(static_cast<int>(json_number(g, "d", 0)));
    if (var != "base_width") key += ", width " + std::to_string(static_cast<int>(json_number(g, "base_width", 0)));
    const double x = json_number(g, var.c_str(), NAN);
    const double med = json_number(g, "cond_median", NAN), lo = json_number(g, "cond_min", NAN),
                 hi = json_number(g, "cond_max", NAN);
    if (!(x > 0 && med > 0 && lo > 0 && hi > 0)) continue;
    if (!lines.count(key)) order.push_back(key);
    lines[key][x] = {med, lo, hi};
    xlo = std::min(xlo, x), xhi = std::max(xhi, x), ylo = std::min(ylo, lo), yhi = std::max(yhi, hi);
  }
  if (order.empty()) {
    rep->notes.push_back(name + ": no finite condition number; not drawn");
    return;
  }
  std::ostringstream plot;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const std::string file = name + "_" + std::to_string(k) + ".dat";
    std::ostringstream dat;
    for (const auto& [x, v] : lines[order[k]]) dat << num(x) << ' ' << num(v[0]) << ' ' << num(v[1]) << ' ' << num(v[2]) << '\n';
    w->data[file] = dat.str();
    plot << (k ? ", \\\n     " : "plot ") << gq(file) << " using 1:2:3:4 with yerrorlines lw 2 pt 7 ps 0.8 lc rgb "
         << gq(colour_of(static_cast<int>(k))) << " title " << gq(order[k]);
  }
  if (xhi == xlo) xlo /= 1.5, xhi *= 1.5;
  std::ostringstream b;
  b << "set title " << gqq("NTK condition number at initialization against " + label +
                           "\nmedian over seeds, bars: min to max") << " noenhanced\n"
    << "set logscale xy\nset xrange [" << num(xlo / 1.15) << ":" << num(xhi * 1.15) << "]\n"
    << "set yrange [" << num(ylo / 2) << ":" << num(yhi * 2) << "]\n"
    << "set xtics (" ;
  std::set<double> xs;  // every line's x values: the lines need not share them
  for (const auto& key : order)
    for (const auto& [x, v] : lines[key]) xs.insert(x);
  int t = 0;
  for (double x : xs) b << (t++ ? ", " : "") << "'" << num(x) << "' " << num(x);
  b << ")\nset format y '10^{%L}'\nset grid xtics ytics lc rgb '#dddddd'\n"
    << "set xlabel " << gq(label) << "\nset ylabel 'cond = lambda_max / lambda_min' noenhanced\n"
    << "set key top left Left reverse box opaque noenhanced\n" << plot.str() << "\n";
  w->figures.push_back(Figure{name, 900, 650, b.str()});
}

// Histograms of log10 eigenvalues, one figure per (d, width, activation, when), the archs
// overlaid as steps.
void ntk_hist_figures(const CsvTable& t, Work* w) {
  const int c_arch = t.column("arch"), c_act = t.column("activation"), c_d = t.column("d"),
            c_bw = t.column("base_width"), c_when = t.column("when"), c_lo = t.column("bin_lo"),
            c_hi = t.column("bin_hi"), c_frac = t.column("fraction");
  std::map<std::string, std::map<std::string, std::string>> figs;  // figure -> arch -> data
  std::vector<std::string> order;
  std::map<std::string, std::string> titles;
  for (const auto& r : t.rows) {
    const std::string fig = "ntk_hist_" + slug(r[c_act]) + "_d" + r[c_d] + "_w" + r[c_bw] +
                            (r[c_when] == "init" ? "" : "_" + slug(r[c_when]));
    if (!figs.count(fig)) {
      order.push_back(fig);
      titles[fig] = "NTK eigenvalues, " + r[c_act] + ", d = " + r[c_d] + ", width " + r[c_bw] + ", " +
                    (r[c_when] == "init" ? "at initialization" : "after training");
    }
    const double lo = parse_double_field(r[c_lo], t.path), hi = parse_double_field(r[c_hi], t.path);
    figs[fig][r[c_arch]] += num(0.5 * (lo + hi)) + " " + r[c_frac] + "\n";
  }
  for (const auto& fig : order) {
    std::ostringstream plot;
    int k = 0;
    for (const auto& [arch, dat] : figs[fig]) {
      const std::string file = fig + "_" + slug(arch) + ".dat";
      w->data[file] = dat;
      plot << (k ? ", \\\n     " : "plot ") << gq(file) << " using 1:2 with histeps lw 2 lc rgb "
           << gq(colour_of(k)) << " title " << gq(arch);
      ++k;
    }
    std::ostringstream b;
    b << "set title " << gqq(titles[fig] + "\nshare of the eigenvalues above the floor, all seeds") << " noenhanced\n"
      << "set xlabel 'log10 eigenvalue of K = J J^T'\nset ylabel 'fraction'\nset yrange [0:*]\n"
      << "set grid lc rgb '#dddddd'\nset key top left box opaque noenhanced\n" << plot.str() << "\n";
    w->figures.push_back(Figure{fig, 900, 600, b.str()});
  }
}

// Median loss curves per arch, log scale, the crossing step marked, one figure per
// (activation, d, width).
void ntk_loss_figures(const CsvTable& med, const CsvTable* cross, Work* w) {
  const int c_arch = med.column("arch"), c_act = med.column("activation"), c_d = med.column("d"),
            c_bw = med.column("base_width"), c_step = med.column("step"), c_loss = med.column("median_loss");
  std::map<std::string, std::map<std::string, std::string>> figs;
  std::map<std::string, std::string> titles;
  std::vector<std::string> order;
  for (const auto& r : med.rows) {
    const double v = r[c_loss] == "inf" ? INFINITY : parse_double_field(r[c_loss], med.path);
    const std::string fig = "ntk_loss_" + slug(r[c_act]) + "_d" + r[c_d] + "_w" + r[c_bw];
    if (!figs.count(fig)) {
      order.push_back(fig);
      titles[fig] = "Training loss (median over seeds), " + r[c_act] + ", d = " + r[c_d] + ", width " + r[c_bw];
    }
    if (std::isfinite(v) && v > 0) figs[fig][r[c_arch]] += r[c_step] + " " + r[c_loss] + "\n";
  }
  for (const auto& fig : order) {
    std::ostringstream plot, marks;
    int k = 0;
    for (const auto& [arch, dat] : figs[fig]) {
      const std::string file = fig + "_" + slug(arch) + ".dat";
      w->data[file] = dat;
      plot << (k ? ", \\\n     " : "plot ") << gq(file) << " using 1:2 with lines lw 2 lc rgb " << gq(colour_of(k))
           << " title " << gq(arch);
      ++k;
    }
    if (!k) continue;
    std::string sub = "no crossing found";
    if (cross) {
      const int x_act = cross->column("activation"), x_d = cross->column("d"), x_bw = cross->column("base_width"),
                x_found = cross->column("found"), x_step = cross->column("step"), x_arch = cross->column("arch");
      std::string found;
      for (const auto& r : cross->rows) {
        if ("ntk_loss_" + slug(r[x_act]) + "_d" + r[x_d] + "_w" + r[x_bw] != fig) continue;
        if (r[x_found] == "yes") {
          marks << "set arrow from " << r[x_step] << ", graph 0 to " << r[x_step]
                << ", graph 1 nohead dt 2 lw 1.5 lc rgb '#444444'\n"
                << "set label " << gq(r[x_arch] + " crosses at step " + r[x_step]) << " at " << r[x_step]
                << ", graph 0.95 offset 0.5,0 noenhanced\n";
          found += (found.empty() ? "" : "; ") + r[x_arch] + " crosses below mlp at step " + r[x_step];
        }
      }
      if (!found.empty()) sub = found;
    }
    std::ostringstream b;
    b << "set title " << gqq(titles[fig] + "\n" + sub) << " noenhanced\n"
      << "set logscale y\nset format y '10^{%L}'\nset xlabel 'step'\nset ylabel 'L = (1/2N) sum (y - f)^2' noenhanced\n"
      << "set grid lc rgb '#dddddd'\nset key top right box opaque noenhanced\n" << marks.str() << plot.str() << "\n";
    w->figures.push_back(Figure{fig, 900, 600, b.str()});
  }
}

}  // namespace

PlotReport plot_ntk(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  if (!fs::exists(d / "ntk_summary.json", ec) || !fs::exists(d / "ntk_hist.csv", ec))
    throw std::invalid_argument(dir + ": no ntk_summary.json and ntk_hist.csv (not a gpu-sweep ntk directory?)");
  PlotReport rep;
  nlohmann::json summary;
  {
    std::ifstream in(d / "ntk_summary.json");
    try {
      in >> summary;
    } catch (const nlohmann::json::exception&) {
      throw std::invalid_argument((d / "ntk_summary.json").string() + ": not valid JSON");
    }
  }
  if (!summary.is_object() || !summary.contains("groups") || !summary["groups"].is_array())
    throw std::invalid_argument((d / "ntk_summary.json").string() + ": no groups");
  Work w;
  ntk_cond_figure(summary, "d", "input dimension d", "ntk_cond_vs_d", &w, &rep);
  ntk_cond_figure(summary, "base_width", "width", "ntk_cond_vs_width", &w, &rep);
  ntk_hist_figures(read_csv_table((d / "ntk_hist.csv").string()), &w);
  if (fs::exists(d / "ntk_loss_median.csv", ec)) {
    const CsvTable med = read_csv_table((d / "ntk_loss_median.csv").string());
    std::unique_ptr<CsvTable> cross;
    if (fs::exists(d / "ntk_crossing.csv", ec))
      cross = std::make_unique<CsvTable>(read_csv_table((d / "ntk_crossing.csv").string()));
    ntk_loss_figures(med, cross.get(), &w);
  }
  if (w.figures.empty()) throw std::invalid_argument(dir + ": nothing to plot");
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty())
    throw GnuplotMissing("gnuplot not found on PATH, so no plots were written (install gnuplot-nox, then run: "
                         "gpu-sweep plot " + dir + ")");
  rep.files = render(w, d / "plots", gnuplot);
  return rep;
}

}  // namespace gs
