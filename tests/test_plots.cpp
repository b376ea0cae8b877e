// The figures and the saved parameters of a run: every plot file is a valid PNG or SVG, the
// parameters read back from params.bin give the RMSEs of results.csv, and `gpu-sweep plot`
// on a missing or malformed directory fails with one line. Without gnuplot these tests fail.
#include <gtest/gtest.h>

#include <cmath>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gpusweep/figures/plots.h"
#include "gpusweep/io/params_io.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/network.h"
#include "program.h"

namespace fs = std::filesystem;

namespace {

using gs_test::Outcome;
using gs_test::run;
using gs_test::slurp;
using gs_test::tmp_dir;

using gs_test::lines;

const char* const kRunArgs = "--widths 2:6 --points 300 --schedule D,U,Q --seeds 2 --threads 1";

// A small sweep into dir/run; returns the run directory.
fs::path small_run(const fs::path& dir, const std::string& extra = "") {
  const fs::path out = dir / "run";
  const Outcome r = run(std::string(kRunArgs) + " -q --out " + out.string() + " " + extra, dir);
  EXPECT_EQ(r.code, 0) << r.err;
  return out;
}

bool is_png(const std::string& bytes) {
  static const char sig[] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  return bytes.size() > 8 && bytes.compare(0, 8, std::string(sig, 8)) == 0;
}

// A structural XML check: declarations, comments and CDATA skipped, every start tag closed in
// order, one root element and it is <svg>. Returns "" when the text passes, else why not.
std::string svg_problem(const std::string& t) {
  std::vector<std::string> stack;
  std::string root;
  std::size_t i = 0;
  while ((i = t.find('<', i)) != std::string::npos) {
    if (t.compare(i, 4, "<!--") == 0) {
      i = t.find("-->", i);
      if (i == std::string::npos) return "unterminated comment";
      i += 3;
      continue;
    }
    if (t.compare(i, 9, "<![CDATA[") == 0) {
      i = t.find("]]>", i);
      if (i == std::string::npos) return "unterminated CDATA";
      i += 3;
      continue;
    }
    // Find the end of the tag, skipping '>' inside quoted attribute values.
    std::size_t j = i + 1;
    char quote = 0;
    for (; j < t.size(); ++j) {
      if (quote) {
        if (t[j] == quote) quote = 0;
      } else if (t[j] == '"' || t[j] == '\'') {
        quote = t[j];
      } else if (t[j] == '>') {
        break;
      }
    }
    if (j >= t.size()) return "unterminated tag at byte " + std::to_string(i);
    const std::string tag = t.substr(i + 1, j - i - 1);
    i = j + 1;
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1, tag.find_first_of(" \t\r\n", 1) - 1);
      if (stack.empty() || stack.back() != name) return "</" + name + "> closes nothing open";
      stack.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \t\r\n/"));
    if (stack.empty()) {
      if (!root.empty()) return "a second root element <" + name + ">";
      root = name;
    }
    if (tag.back() != '/') stack.push_back(name);
  }
  if (root != "svg") return "the root element is <" + root + ">, not <svg>";
  if (!stack.empty()) return "<" + stack.back() + "> is never closed";
  return "";
}

TEST(Plots, GnuplotIsInstalled) {
  ASSERT_FALSE(gs::find_gnuplot().empty())
      << "gnuplot is not on PATH: install Debian's gnuplot-nox (.ci/setup does)";
}

TEST(Plots, EveryFigureIsAValidPngAndSvg) {
  const fs::path dir = tmp_dir();
  const fs::path out = small_run(dir);
  std::vector<std::string> names = {"scaling", "scaling_effective"};
  for (const char* arch : {"mlp", "glu", "gqu"}) {
    names.push_back(std::string("fit_") + arch + "_relu_invcos2_n6_s0");
    names.push_back(std::string("neurons_") + arch + "_relu_invcos2_n6_s0");
  }
  for (const auto& name : names) {
    const fs::path png = out / "plots" / (name + ".png"), svg = out / "plots" / (name + ".svg");
    ASSERT_TRUE(fs::exists(png)) << png;
    ASSERT_TRUE(fs::exists(svg)) << svg;
    EXPECT_GT(fs::file_size(png), 1000u) << png;
    EXPECT_GT(fs::file_size(svg), 1000u) << svg;
    EXPECT_TRUE(is_png(slurp(png))) << png << " lacks the PNG signature";
    EXPECT_EQ(svg_problem(slurp(svg)), "") << svg;
  }
  // Exactly these files: no temporary folder or data file left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(out / "plots")) {
    ++files;
    EXPECT_TRUE(e.is_regular_file()) << e.path();
  }
  EXPECT_EQ(files, 2 * static_cast<int>(names.size()));
  // The second scaling figure is drawn against the effective parameters.
  EXPECT_NE(slurp(out / "plots" / "scaling_effective.svg").find("effective parameters"), std::string::npos);
}

// 2D inputs: the per-network figure is a pair of heat maps (network, error) with the hinge
// lines; a 2D --data run draws the error at its points; d > 2 gets the scaling figure and a
// note.
TEST(Plots, TwoDimensionalNetworksAreDrawnAsHeatMaps) {
  const fs::path dir = tmp_dir();
  {
    std::ofstream f(dir / "surface.csv");
    f << "a,b,y\n";
    for (int k = 0; k < 200; ++k) f << std::sin(0.37 * k) << "," << std::cos(0.91 * k) << "," << std::sin(k) << "\n";
  }
  const fs::path out = dir / "run";
  Outcome r = run(std::string(kRunArgs) + " --arch mlp,glu --target sin_sin,friedman1 --out " + out.string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("friedman1): inputs of dimension 5"), std::string::npos) << r.err;
  r = run("--widths 2:6 --schedule D,U,Q --seeds 2 --threads 1 --arch glu --data " + (dir / "surface.csv").string() + " -q --out " +
              (dir / "data").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const fs::path& p : {out / "plots" / "fit_mlp_relu_sin_sin_n6_s0", out / "plots" / "fit_glu_relu_sin_sin_n6_s0",
                            dir / "data" / "plots" / "fit_glu_relu_surface.csv_n6_s0", out / "plots" / "scaling"}) {
    const fs::path png = p.string() + ".png", svg = p.string() + ".svg";
    ASSERT_TRUE(fs::exists(png)) << png;
    EXPECT_TRUE(is_png(slurp(png))) << png;
    EXPECT_EQ(svg_problem(slurp(svg)), "") << svg;
    EXPECT_GT(fs::file_size(png), 5000u) << png;
  }
  // d = 5: no per-network figure.
  EXPECT_FALSE(fs::exists(out / "plots" / "fit_mlp_relu_friedman1_n6_s0.png"));
}

TEST(Plots, SvgCheckRejectsBrokenFiles) {
  EXPECT_EQ(svg_problem("<?xml version=\"1.0\"?>\n<svg a='>'><g><path d=\"M0\"/></g></svg>"), "");
  EXPECT_NE(svg_problem("<svg><g></svg>"), "");
  EXPECT_NE(svg_problem("<html></html>"), "");
  EXPECT_NE(svg_problem("<svg><g>"), "");
}

TEST(Params, RoundTripGivesTheTestRmseOfResultsCsv) {
  const fs::path dir = tmp_dir();
  const fs::path out = small_run(dir, "--no-plots");
  EXPECT_FALSE(fs::exists(out / "plots")) << "--no-plots wrote plots";
  const auto index = gs::read_params_index(out.string());
  const gs::CsvTable results = gs::read_csv_table((out / "results.csv").string());
  ASSERT_EQ(index.size(), results.rows.size());
  ASSERT_EQ(index.size(), 30u);  // 3 archs x 5 widths x 2 seeds
  std::size_t total = 0;
  for (const auto& e : index) total += e.count;
  EXPECT_EQ(fs::file_size(out / "params.bin"), 8 * total);
  const gs::Dataset ds = gs::make_target_dataset("invcos2", 300, 0);
  const int c_arch = results.column("arch"), c_width = results.column("width"), c_seed = results.column("seed"),
            c_rmse = results.column("test_rmse"), c_params = results.column("params");
  int mismatches = 0;
  for (std::size_t k = 0; k < index.size(); ++k) {
    const auto& e = index[k];
    const auto& row = results.rows[k];
    ASSERT_EQ(e.arch, row[c_arch]);
    ASSERT_EQ(std::to_string(e.width), row[c_width]);
    ASSERT_EQ(std::to_string(e.seed), row[c_seed]);
    ASSERT_EQ(std::to_string(e.count), row[c_params]);
    gs::Shape s;
    ASSERT_TRUE(gs::entry_shape(e, &s)) << e.arch << " " << e.width;
    const auto th = gs::read_params(out.string(), e);
    double sse = 0.0;
    for (int q = 0; q < ds.n_test(); ++q) {
      const double r = gs::evaluate(s, th.data(), &ds.x_test[q]) - ds.y_test[q];
      sse += r * r;
    }
    const double rmse = std::sqrt(sse / ds.n_test());
    const double ref = std::stod(row[c_rmse]);
    if (!(std::fabs(rmse - ref) <= 1e-12 * std::fabs(ref)) && mismatches++ < 5)
      ADD_FAILURE() << e.arch << " width " << e.width << " seed " << e.seed << ": RMSE from params.bin " << rmse
                    << ", results.csv " << ref;
  }
}

// gpoly:K through the whole run: its index rows say how many coefficients each neuron's
// polynomial has, the vectors read back give results.csv's RMSE, and its figures draw.
TEST(Params, GpolyRowsSayTheirPolynomialTermsAndReadBack) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  const Outcome r = run("--arch gpoly:2,gpoly:1-construct --widths 3,5 --points 300 --schedule D,G,ALL*3 "
                        "--threads 1 -q --out " + out.string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto index = gs::read_params_index(out.string());
  const gs::CsvTable results = gs::read_csv_table((out / "results.csv").string());
  ASSERT_EQ(index.size(), 4u);
  const gs::Dataset ds = gs::make_target_dataset("invcos2", 300, 0);
  for (std::size_t k = 0; k < index.size(); ++k) {
    const auto& e = index[k];
    EXPECT_EQ(e.factors, 1) << e.arch;
    EXPECT_EQ(e.poly_terms, e.arch == "gpoly:2" ? 3 : 2) << e.arch;
    EXPECT_EQ(static_cast<int>(e.count), (e.poly_terms + 2) * e.n + 1) << e.arch;
    gs::Shape s;
    ASSERT_TRUE(gs::entry_shape(e, &s)) << e.arch;
    const auto th = gs::read_params(out.string(), e);
    double sse = 0.0;
    for (int q = 0; q < ds.n_test(); ++q) sse += std::pow(gs::evaluate(s, th.data(), &ds.x_test[q]) - ds.y_test[q], 2);
    const double ref = std::stod(results.rows[k][results.column("test_rmse")]);
    EXPECT_NEAR(std::sqrt(sse / ds.n_test()), ref, 1e-12 * ref) << e.arch << " width " << e.n;
    // A row whose layout disagrees with its arch is not read as that network.
    auto bad = e;
    bad.poly_terms = 1;
    EXPECT_FALSE(gs::entry_shape(bad, &s));
  }
  bool drawn = false;
  for (const auto& f : fs::directory_iterator(out / "plots"))
    drawn = drawn || f.path().filename().string().rfind("neurons_gpoly", 0) == 0;
  EXPECT_TRUE(drawn) << "no neurons figure of a gpoly network";
}

TEST(PlotCommand, RedrawsTheChosenNetworks) {
  const fs::path dir = tmp_dir();
  const fs::path out = small_run(dir, "--no-plots");
  const Outcome r = run("plot " + out.string() + " --nets glu:3:1,mlp:2:0", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* name : {"scaling", "fit_glu_relu_invcos2_n3_s1", "neurons_glu_relu_invcos2_n3_s1",
                           "fit_mlp_relu_invcos2_n2_s0", "neurons_mlp_relu_invcos2_n2_s0"})
    for (const char* ext : {".png", ".svg"}) EXPECT_TRUE(fs::exists(out / "plots" / (name + std::string(ext)))) << name;
  EXPECT_FALSE(fs::exists(out / "plots" / "fit_gqu_relu_invcos2_n6_s0.png"));
}

TEST(PlotCommand, WithoutGnuplotTheSweepStillWritesItsResults) {
  const fs::path dir = tmp_dir();
  const fs::path out = dir / "run";
  const Outcome r = run(std::string(kRunArgs) + " --out " + out.string(), dir, "PATH=/nonexistent");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "results.csv"));
  EXPECT_TRUE(fs::exists(out / "params.bin"));
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("gnuplot"), std::string::npos) << r.err;
  const Outcome p = run("plot " + out.string(), dir, "PATH=/nonexistent");
  EXPECT_NE(p.code, 0);
  EXPECT_EQ(lines(p.err), 1) << p.err;
  EXPECT_NE(p.err.find("gnuplot"), std::string::npos) << p.err;
}

// A gnuplot that hangs is stopped after GPUSWEEP_GNUPLOT_TIMEOUT seconds, with what it
// started: `plot` fails in one line, a run keeps its results.
TEST(PlotCommand, AHangingGnuplotIsStopped) {
  const fs::path dir = tmp_dir();
  const fs::path bin = dir / "bin";
  fs::create_directories(bin);
  std::ofstream(bin / "gnuplot") << "#!/bin/sh\necho $$ > " << (dir / "pid").string() << "\nsleep 300\n";
  fs::permissions(bin / "gnuplot", fs::perms::owner_all);
  const std::string env = "GPUSWEEP_GNUPLOT_TIMEOUT=1 PATH=" + bin.string() + ":/usr/bin:/bin";
  const fs::path out = dir / "run";
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome r = run(std::string(kRunArgs) + " --out " + out.string(), dir, env);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "results.csv"));
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("gnuplot did not finish within 1 s"), std::string::npos) << r.err;
  const Outcome p = run("plot " + out.string(), dir, env);
  EXPECT_EQ(p.code, 1);
  EXPECT_EQ(lines(p.err), 1) << p.err;
  EXPECT_NE(p.err.find("gnuplot did not finish"), std::string::npos) << p.err;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
  // The fake gnuplot is gone.
  const std::string pid = slurp(dir / "pid");
  EXPECT_NE(std::system(("kill -0 " + pid.substr(0, pid.find('\n')) + " 2>/dev/null").c_str()), 0);
}

TEST(PlotCommand, AFailingGnuplotIsReportedAndKeepsTheResults) {
  const fs::path dir = tmp_dir();
  const fs::path bin = dir / "bin";
  fs::create_directories(bin);
  std::ofstream(bin / "gnuplot") << "#!/bin/sh\necho '\"plots.gp\" line 7: broken on purpose' >&2\nexit 1\n";
  fs::permissions(bin / "gnuplot", fs::perms::owner_all);
  const std::string env = "PATH=" + bin.string() + ":/usr/bin:/bin";
  const fs::path out = dir / "run";
  const Outcome r = run(std::string(kRunArgs) + " --out " + out.string(), dir, env);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "results.csv"));
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("broken on purpose"), std::string::npos) << r.err;
  const Outcome p = run("plot " + out.string(), dir, env);
  EXPECT_NE(p.code, 0);
  EXPECT_EQ(lines(p.err), 1) << p.err;
  EXPECT_NE(p.err.find("gnuplot failed"), std::string::npos) << p.err;
  // No temporary folder or half-made image is left behind.
  if (fs::exists(out / "plots"))
    for (const auto& e : fs::directory_iterator(out / "plots")) ADD_FAILURE() << "left behind: " << e.path();
}

struct BadDir {
  std::string name;
  std::string damage;  // what to do to a good run directory
  std::string must_mention;
};

void PrintTo(const BadDir& b, std::ostream* os) { *os << b.name; }

class PlotBadDir : public ::testing::TestWithParam<BadDir> {};

TEST_P(PlotBadDir, FailsWithOneLine) {
  const fs::path dir = tmp_dir();
  fs::path out = small_run(dir, "--no-plots");
  const std::string damage = GetParam().damage;
  std::string extra;
  if (damage == "missing") out = dir / "nope";
  else if (damage == "empty") fs::remove_all(out), fs::create_directories(out);
  else if (damage == "summary") std::ofstream(out / "summary.json") << "{\"config\": [1, 2";
  else if (damage == "results") std::ofstream(out / "results.csv", std::ios::app) << "mlp,relu\n";
  else if (damage == "params") fs::resize_file(out / "params.bin", 16);
  else if (damage == "index") std::ofstream(out / "params_index.csv") << "arch,width\nmlp,2\n";
  else if (damage == "nets-syntax") extra = " --nets glu:x:0";
  else if (damage == "nets-none") extra = " --nets glu:99:0";
  const Outcome r = run("plot " + out.string() + extra, dir);
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err.find("gpu-sweep: error: "), 0u) << r.err;
  EXPECT_NE(r.err.find(GetParam().must_mention), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out / "plots")) << "a failed plot left " << out / "plots";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PlotBadDir,
    ::testing::Values(BadDir{"Missing", "missing", "no such directory"},
                      BadDir{"Empty", "empty", "no results.csv"},
                      BadDir{"SummaryNotJson", "summary", "summary.json"},
                      BadDir{"ResultsRowShort", "results", "results.csv"},
                      BadDir{"ParamsTruncated", "params", "params.bin"},
                      BadDir{"IndexColumnsMissing", "index", "params_index.csv"},
                      BadDir{"NetsSyntax", "nets-syntax", "--nets"},
                      BadDir{"NetsNoSuchNetwork", "nets-none", "glu:99:0"}),
    [](const ::testing::TestParamInfo<BadDir>& i) { return i.param.name; });

}  // namespace
