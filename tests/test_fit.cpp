// Slope fits: per-seed slopes with a bootstrap interval that covers a known exponent, the
// clear refusals (too few widths, RMSE that is not positive), results.csv read back (every
// column, and files from before its later columns), and `gpu-sweep fit DIR` as a user runs it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gpusweep/analysis/fit.h"
#include "gpusweep/io/output.h"
#include "gpusweep/model/data.h"
#include "program.h"

namespace fs = std::filesystem;

namespace gs {
namespace {

// RMSE = c n^slope with lognormal noise of the given size, seeds 0..seeds-1.
std::vector<FitRow> synthetic(double slope, int seeds, double noise, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<FitRow> rows;
  for (int s = 0; s < seeds; ++s) {
    const double c = std::exp(0.3 * rng.normal());  // each seed its own constant
    for (int w = 4; w <= 64; w += 4) {
      FitRow r;
      r.arch = "glu";
      r.activation = "relu";
      r.target = "synthetic";
      r.width = w;
      r.params = 5 * w + 1;
      r.seed = s;
      r.test_rmse = c * std::pow(w, slope) * std::exp(noise * rng.normal());
      rows.push_back(r);
    }
  }
  return rows;
}

TEST(Fit, BootstrapIntervalCoversTheTrueSlope) {
  int covered = 0;
  const int trials = 60;
  for (int t = 0; t < trials; ++t) {
    FitOptions o;
    o.bootstrap = 1000;
    o.seed = 100 + t;
    const auto fits = fit_groups(synthetic(-3.0, 9, 0.2, t), o);
    ASSERT_EQ(fits.size(), 1u);
    ASSERT_TRUE(fits[0].ok) << fits[0].note;
    const SlopeStat& s = fits[0].seed_vs_width;
    EXPECT_EQ(s.seeds, 9);
    EXPECT_LE(s.lo, s.median);
    EXPECT_GE(s.hi, s.median);
    EXPECT_LT(s.hi - s.lo, 0.5);
    covered += s.lo <= -3.0 && -3.0 <= s.hi;
  }
  // A 95% interval; the bootstrap of a median from 9 seeds is a little narrow, so ask for 85%.
  EXPECT_GE(covered, trials * 85 / 100) << covered << " of " << trials;
  // Without noise every seed has slope -3 exactly, and so has the interval.
  const auto exact = fit_groups(synthetic(-3.0, 5, 0.0, 1), FitOptions{});
  EXPECT_NEAR(exact[0].seed_vs_width.lo, -3.0, 1e-12);
  EXPECT_NEAR(exact[0].seed_vs_width.hi, -3.0, 1e-12);
  EXPECT_NEAR(exact[0].vs_width.slope, -3.0, 1e-12);
}

TEST(Fit, WidthRangeIsHonoured) {
  FitOptions o;
  o.min_width = 10;
  o.max_width = 40;
  const auto fits = fit_groups(synthetic(-2.0, 3, 0.0, 2), o);
  ASSERT_TRUE(fits[0].ok);
  EXPECT_EQ(fits[0].fit_widths.front(), 12);
  EXPECT_EQ(fits[0].fit_widths.back(), 40);
  EXPECT_EQ(fits[0].vs_width.points, 8);
  // Every width keeps its RMSEs, in the fit or not.
  EXPECT_LT(fits[0].widths.front(), 10);
  EXPECT_GT(fits[0].widths.back(), 40);
  EXPECT_EQ(fits[0].median_rmse.size(), fits[0].widths.size());
}

TEST(Fit, SeedsThatGaveTheSameNetworksAreNamed) {
  auto rows = synthetic(-2.0, 1, 0.1, 5);
  const std::size_t n = rows.size();
  for (int s = 1; s < 3; ++s)
    for (std::size_t k = 0; k < n; ++k) {
      rows.push_back(rows[k]);
      rows.back().seed = s;
    }
  auto fits = fit_groups(rows, FitOptions{});
  ASSERT_TRUE(fits[0].ok);
  EXPECT_TRUE(fits[0].seeds_identical);
  EXPECT_NE(fits[0].seed_note.find("all 3 seeds gave the same networks"), std::string::npos) << fits[0].seed_note;
  std::ostringstream table;
  print_fit_table(table, fits, FitOptions{});
  EXPECT_NE(table.str().find("-2.0"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("[seeds identical]"), std::string::npos) << table.str();
  // One seed that differs anywhere makes them a spread again.
  rows.back().test_rmse *= 1.01;
  fits = fit_groups(rows, FitOptions{});
  EXPECT_FALSE(fits[0].seeds_identical);
  EXPECT_FALSE(fit_groups(synthetic(-2.0, 3, 0.1, 5), FitOptions{})[0].seeds_identical);
}

TEST(Fit, TooFewWidthsOrNonPositiveRmseIsAClearNoFit) {
  FitOptions o;
  o.min_width = 64;
  auto fits = fit_groups(synthetic(-2.0, 2, 0.1, 3), o);
  ASSERT_EQ(fits.size(), 1u);
  EXPECT_FALSE(fits[0].ok);
  EXPECT_NE(fits[0].note.find("at least two widths"), std::string::npos) << fits[0].note;

  auto rows = synthetic(-2.0, 2, 0.1, 4);
  rows[5].test_rmse = 0.0;
  fits = fit_groups(rows, FitOptions{});
  EXPECT_FALSE(fits[0].ok);
  EXPECT_NE(fits[0].note.find("positive"), std::string::npos) << fits[0].note;
  EXPECT_NE(fits[0].note.find("width " + std::to_string(rows[5].width)), std::string::npos) << fits[0].note;
  rows[5].test_rmse = -1.0;
  EXPECT_FALSE(fit_groups(rows, FitOptions{})[0].ok);

  // A failed network is left out, not fitted.
  rows[5].failed = true;
  EXPECT_TRUE(fit_groups(rows, FitOptions{})[0].ok);
}

TEST(Fit, ResultsCsvReadsBack) {
  const std::string text =
      "arch,activation,target,width,params,seed,train_rmse,test_rmse,status,reason,newton_steps,"
      "scaled_gradient,last_rel_decrease,seconds\n"
      "glu,relu,\"exp(-x^2)*min(x,1)\",8,41,0,0.001,0.002,converged,gradient below gtol,12,1e-9,1e-11,0.01\n"
      "glu,relu,\"a \"\"quoted\"\" name\",16,81,1,0.001,0.0005,failed,non-finite loss or gradient,3,nan,nan,0.02\n";
  const auto rows = parse_results_csv(text, "results.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].target, "exp(-x^2)*min(x,1)");
  EXPECT_EQ(rows[0].width, 8);
  EXPECT_EQ(rows[0].params, 41);
  EXPECT_DOUBLE_EQ(rows[0].test_rmse, 0.002);
  EXPECT_FALSE(rows[0].failed);
  EXPECT_EQ(rows[1].target, "a \"quoted\" name");
  EXPECT_TRUE(rows[1].failed);
  EXPECT_THROW(parse_results_csv("x,y\n1,2\n", "r.csv"), std::invalid_argument);
  EXPECT_THROW(parse_results_csv(text.substr(0, text.find('\n') + 1) + "glu,relu,t,eight,41,0,1,1,converged,,1,1\n", "r.csv"),
               std::invalid_argument);
}

TEST(Fit, ResultsTableReadsEveryColumn) {
  const std::string header =
      "arch,activation,target,width,params,effective_params,seed,train_rmse,test_rmse,status,reason,"
      "newton_steps,scaled_gradient,last_rel_decrease,seconds\n";
  const auto rows = parse_results_table(
      header + "glu,relu,sin4,8,41,33,2,0.001,0.002,max_steps,step limit,12,1e-09,1e-11,0.5\n", "r.csv");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].arch, "glu");
  EXPECT_EQ(rows[0].target, "sin4");
  EXPECT_EQ(rows[0].width, 8);
  EXPECT_EQ(rows[0].params, 41);
  EXPECT_EQ(rows[0].effective_params, 33);
  EXPECT_EQ(rows[0].seed, 2);
  const NetResult& r = rows[0].result;
  EXPECT_EQ(r.status, Status::kMaxSteps);
  EXPECT_EQ(r.reason, "step limit");
  EXPECT_EQ(r.newton_steps, 12);
  EXPECT_DOUBLE_EQ(r.scaled_grad, 1e-9);
  EXPECT_DOUBLE_EQ(r.rel_decrease, 1e-11);
  EXPECT_DOUBLE_EQ(r.train_rmse, 0.001);
  EXPECT_DOUBLE_EQ(r.test_rmse, 0.002);
  EXPECT_DOUBLE_EQ(r.seconds, 0.5);

  // A file from before effective_params, scaled_gradient and last_rel_decrease.
  const auto old = parse_results_table(
      "arch,activation,target,width,params,seed,train_rmse,test_rmse,status,reason,newton_steps,seconds\n"
      "mlp,relu,t,4,13,0,nan,nan,failed,non-finite loss,3,0.1\n",
      "old.csv");
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(old[0].effective_params, 0);
  EXPECT_TRUE(std::isnan(old[0].result.scaled_grad));
  EXPECT_TRUE(std::isnan(old[0].result.test_rmse));
  EXPECT_EQ(old[0].result.status, Status::kFailed);

  // A header alone (an empty shard) has no rows; the fits refuse it.
  EXPECT_TRUE(parse_results_table(header, "r.csv").empty());
  EXPECT_THROW(parse_results_csv(header, "r.csv"), std::invalid_argument);

  // One line naming the file, the row or the column.
  const auto error = [](const std::string& text) {
    try {
      parse_results_table(text, "r.csv");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error(header + "glu,relu,t,8,41,33,2,1,1,done,,1,1,1,1\n"), "r.csv: row 2: unknown status 'done'");
  EXPECT_EQ(error(header + "glu,relu,t,8,41,33,2,1,1,converged,,x,1,1,1\n"), "r.csv: row 2: 'x' is not an integer");
  EXPECT_EQ(error("arch,activation,target,width,params,seed,test_rmse,status\nglu,relu,t,8,41,0,1,converged\n"),
            "r.csv: no column 'train_rmse' in the header (not a gpu-sweep results.csv?)");
}

// The program: a run, then `fit DIR` with other widths; and its refusals.
using gs_test::Outcome;
using gs_test::run;
using gs_test::slurp;

TEST(FitCommand, RefitsARunWithOtherWidths) {
  const fs::path dir = fs::path(GPUSWEEP_TEST_TMP) / "fit_command";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string out = (dir / "run").string();
  Outcome r = run("--arch mlp,glu --widths 2:10 --seeds 3 --points 300 --schedule D,U,Q --out " + out, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bootstrap interval"), std::string::npos) << r.out;
  auto summary = nlohmann::json::parse(slurp(fs::path(out) / "summary.json"));
  EXPECT_EQ(summary["fits"][0]["widths"].front().get<int>(), 2);  // every width
  EXPECT_EQ(summary["fits"][0]["median_test_rmse"].size(), 9u);
  EXPECT_EQ(summary["fits"][0]["fit_widths"].front().get<int>(), 4);
  EXPECT_EQ(summary["fits"][0]["seed_slopes"]["vs_width"]["seeds"].get<int>(), 3);
  // MASO initialization and relu: the mlp's seeds train the same networks, and the table says
  // so instead of printing an interval of width zero; the glu's U and u are random.
  EXPECT_EQ(summary["fits"][0]["arch"], "mlp");
  EXPECT_EQ(summary["fits"][0].value("seeds_identical", false), true);
  EXPECT_EQ(summary["fits"][1]["arch"], "glu");
  EXPECT_EQ(summary["fits"][1].value("seeds_identical", false), false);
  EXPECT_NE(r.out.find("[seeds identical]"), std::string::npos) << r.out;

  const fs::path svg = fs::path(out) / "plots" / "scaling.svg";
  const std::string drawn = slurp(svg);
  EXPECT_NE(drawn.find("median-curve slope"), std::string::npos) << "the key says which slope it shows";
  r = run("fit " + out + " --fit-min-width 6 --fit-max-width 9", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(slurp(svg), drawn) << "fit redraws the scaling figure with its new lines";
  EXPECT_NE(r.out.find("widths 6..9"), std::string::npos) << r.out;
  summary = nlohmann::json::parse(slurp(fs::path(out) / "summary.json"));
  EXPECT_EQ(summary["fit_min_width"].get<int>(), 6);
  EXPECT_EQ(summary["fit_max_width"].get<int>(), 9);
  EXPECT_EQ(summary["fits"][0]["fit_widths"].front().get<int>(), 6);
  EXPECT_EQ(summary["fits"][0]["fit_widths"].back().get<int>(), 9);
  EXPECT_EQ(summary["fits"][0]["widths"].size(), 9u);
  EXPECT_EQ(summary["config"]["arch"].get<std::string>(), "mlp,glu");  // the run's config is kept
  // Options left out keep the last fit's values.
  r = run("fit " + out + " --bootstrap 50 -q", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  summary = nlohmann::json::parse(slurp(fs::path(out) / "summary.json"));
  EXPECT_EQ(summary["fit_min_width"].get<int>(), 6);
  EXPECT_EQ(summary["fit_max_width"].get<int>(), 9);
  EXPECT_EQ(summary["bootstrap"]["resamples"].get<int>(), 50);
  r = run("fit " + out + " --fit-max-width 0 -q", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  summary = nlohmann::json::parse(slurp(fs::path(out) / "summary.json"));
  EXPECT_EQ(summary["fit_min_width"].get<int>(), 6);
  EXPECT_TRUE(summary["fit_max_width"].is_null());
  EXPECT_EQ(summary["bootstrap"]["resamples"].get<int>(), 50);

  for (const std::string& bad : {std::string("fit ") + (dir / "nowhere").string(), "fit " + out + " --fit-min-width 10",
                                 "fit " + out + " --fit-min-width 8 --fit-max-width 5", std::string("fit")}) {
    r = run(bad, dir);
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_EQ(gs_test::lines(r.err), 1) << bad << ": " << r.err;
  }
}

}  // namespace
}  // namespace gs
