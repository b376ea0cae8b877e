// Inputs of any dimension: expressions in x, y and x1..xd, the built-in 2D and Friedman
// targets, d-column CSV files, standardization, the test points, and initialization for d > 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gpusweep/model/data.h"
#include "gpusweep/train/sweep.h"
#include "program.h"

namespace fs = std::filesystem;
using namespace gs;

namespace {

constexpr double kPi = 3.141592653589793;

// Mean and population deviation of column j of a row-major table with d columns.
void column_stats(const std::vector<double>& v, int d, int j, double* mean, double* sd) {
  const std::size_t n = v.size() / d;
  double m = 0.0, ss = 0.0;
  for (std::size_t k = 0; k < n; ++k) m += v[k * d + j];
  m /= n;
  for (std::size_t k = 0; k < n; ++k) ss += (v[k * d + j] - m) * (v[k * d + j] - m);
  *mean = m;
  *sd = std::sqrt(ss / n);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Dims, ExpressionDimensionComesFromItsVariables) {
  EXPECT_EQ(make_target_dataset("sin(3*x)", 20, 0).d, 1);
  EXPECT_EQ(make_target_dataset("x*y", 20, 0).d, 2);
  EXPECT_EQ(make_target_dataset("x1+x5^2", 20, 0).d, 5);
  EXPECT_EQ(make_target_dataset("y", 20, 0).d, 2);
  EXPECT_EQ(make_target_dataset("3", 20, 0).d, 1);
  EXPECT_EQ(make_target_dataset("x1", 20, 0, 3).d, 3);  // --dim widens it
  const Dataset ds = make_target_dataset("x1 - 2*x3", 50, 1);
  ASSERT_EQ(ds.x_train.size(), 150u);
  for (int k = 0; k < 50; ++k) EXPECT_DOUBLE_EQ(ds.y_train[k], ds.x_train[3 * k] - 2 * ds.x_train[3 * k + 2]);
  EXPECT_FALSE(ds.standardized);
  EXPECT_EQ(ds.lo, std::vector<double>(3, -1.0));
  EXPECT_EQ(ds.hi, std::vector<double>(3, 1.0));
}

TEST(Dims, BadVariablesAndDimensionsAreRefusedByName) {
  EXPECT_NE(message_of([] { make_target_dataset("x+z", 20, 0); }).find("unknown variable 'z'"), std::string::npos);
  EXPECT_NE(message_of([] { make_target_dataset("x0+x1", 20, 0); }).find("'x0'"), std::string::npos);
  EXPECT_NE(message_of([] { make_target_dataset("x+x2", 20, 0); }).find("not both"), std::string::npos);
  EXPECT_NE(message_of([] { make_target_dataset("x5", 20, 0, 3); }).find("--dim is 3"), std::string::npos);
  EXPECT_NE(message_of([] { make_target_dataset("sin_sin", 20, 0, 3); }).find("has d = 2"), std::string::npos);
  EXPECT_NE(message_of([] { make_target_dataset("x1001", 20, 0); }).find("unknown variable"), std::string::npos);
  EXPECT_NE(message_of([] { make_target_dataset("sqrt(x1*x2)", 200, 0); }).find("not finite at x = ("),
            std::string::npos);
}

// The domain is checked, not only the points drawn: 20 points miss x = 0 and x = 0.3, yet
// 1/x and the poles at 0.3 are refused; jumps, roots and steep but finite targets are not.
TEST(Dims, TargetsMustBeFiniteOnTheirWholeDomain) {
  for (const char* bad : {"1/x", "1/(x-0.3)", "1/(x-0.3)^2", "tan(2*x)", "log(x+1)", "1/(x-0.3)^(1/3)",
                          "x1+x2+x3/(x1-0.5)", "1/(x*y)"})
    EXPECT_THROW(make_target_dataset(bad, 20, 0), std::invalid_argument) << bad;
  EXPECT_NE(message_of([] { make_target_dataset("tan(2*x)", 20, 0); }).find("has a pole at x = -0.785398"),
            std::string::npos)
      << message_of([] { make_target_dataset("tan(2*x)", 20, 0); });
  for (const char* good : {"x>0.3 ? 1 : -1", "sign(x-0.3)*sqrt(abs(x-0.3))", "sin(40*x)", "atan(1e6*(x-0.3))",
                           "x/(x^2+1e-12)", "1/(1+25*x^2)", "exp(-1e4*(x-0.3)^2)", "x*y"})
    EXPECT_NO_THROW(make_target_dataset(good, 20, 0)) << good;
}

// The built-in 2D targets are their formulas on [-1, 1]^2, with an m x m test grid.
TEST(Dims, Builtin2dTargetsAndTheirTestGrid) {
  const Dataset ds = make_target_dataset("sin_sin", 1000, 4);
  ASSERT_EQ(ds.d, 2);
  ASSERT_EQ(ds.n_train(), 1000);
  ASSERT_EQ(ds.n_test(), 32 * 32);  // round(sqrt(1000)) = 32
  for (int k = 0; k < ds.n_train(); ++k) {
    const double x = ds.x_train[2 * k], y = ds.x_train[2 * k + 1];
    ASSERT_TRUE(x >= -1 && x <= 1 && y >= -1 && y <= 1);
    EXPECT_NEAR(ds.y_train[k], std::sin(4 * x) * std::sin(4 * y), 1e-15);
  }
  std::set<std::pair<double, double>> grid;
  for (int k = 0; k < ds.n_test(); ++k) grid.insert({ds.x_test[2 * k], ds.x_test[2 * k + 1]});
  EXPECT_EQ(grid.size(), 32u * 32u);
  for (double cx : {-1.0, 1.0})
    for (double cy : {-1.0, 1.0}) EXPECT_TRUE(grid.count({cx, cy})) << cx << "," << cy;
  const struct {
    const char* name;
    double (*f)(double, double);
  } cases[] = {
      {"x2_y2", [](double x, double y) { return x * x * y * y; }},
      {"x3_y3", [](double x, double y) { return x * x * x * y * y * y; }},
      {"cos_cos", [](double x, double y) { return std::cos(4 * x) * std::cos(4 * y); }},
      {"sin_sin_r2", [](double x, double y) { return std::sin(4 * x) * std::sin(4 * y) * (x * x + y * y); }},
      {"runge9_2d", [](double x, double y) { return 1 / (1 + 9 * x * x + 9 * y * y); }},
      {"atan_sum", [](double x, double y) { return std::atan(x + y); }},
  };
  for (const auto& c : cases) {
    const Dataset t = make_target_dataset(c.name, 100, 0);
    ASSERT_EQ(t.d, 2) << c.name;
    for (int k = 0; k < t.n_test(); ++k)
      EXPECT_NEAR(t.y_test[k], c.f(t.x_test[2 * k], t.x_test[2 * k + 1]), 1e-14) << c.name;
  }
  // Beyond 2D the test points are a second random draw, as many as the training points.
  const Dataset d3 = make_target_dataset("x1*x2*x3", 300, 0);
  ASSERT_EQ(d3.n_test(), 300);
  EXPECT_NE(d3.x_test, d3.x_train);
}

// The Friedman problems: their formulas on their input ranges, then inputs and output
// standardized on the training points (mean 0, deviation 1 there; the test draw mapped alike).
TEST(Dims, FriedmanTargetsAreStandardizedOnTheirTrainingPoints) {
  const double pi = kPi;
  const struct {
    const char* name;
    int d;
    std::vector<double> lo, hi;
    double (*f)(const double*);
  } cases[] = {
      {"friedman1", 5, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 1},
       [](const double* x) {
         return 10 * std::sin(kPi * x[0] * x[1]) + 20 * (x[2] - 0.5) * (x[2] - 0.5) + 10 * x[3] + 5 * x[4];
       }},
      {"friedman2", 4, {0, 40 * pi, 0, 1}, {100, 560 * pi, 1, 11},
       [](const double* x) {
         const double t = x[1] * x[2] - 1 / (x[1] * x[3]);
         return std::sqrt(x[0] * x[0] + t * t);
       }},
      {"friedman3", 4, {0, 40 * pi, 0, 1}, {100, 560 * pi, 1, 11},
       [](const double* x) { return std::atan((x[1] * x[2] - 1 / (x[1] * x[3])) / x[0]); }},
  };
  for (const auto& c : cases) {
    const Dataset ds = make_target_dataset(c.name, 4000, 2);
    ASSERT_EQ(ds.d, c.d) << c.name;
    ASSERT_TRUE(ds.standardized);
    ASSERT_EQ(ds.n_test(), 4000);
    for (int j = 0; j < c.d; ++j) {
      double m, sd;
      column_stats(ds.x_train, c.d, j, &m, &sd);
      EXPECT_NEAR(m, 0.0, 1e-12) << c.name << " x" << j + 1;
      EXPECT_NEAR(sd, 1.0, 1e-12) << c.name << " x" << j + 1;
      // The map is that of a uniform input on the published range.
      EXPECT_NEAR(ds.x_center[j], (c.lo[j] + c.hi[j]) / 2, 0.03 * (c.hi[j] - c.lo[j])) << c.name;
      EXPECT_NEAR(ds.x_scale[j], (c.hi[j] - c.lo[j]) / std::sqrt(12.0), 0.03 * (c.hi[j] - c.lo[j])) << c.name;
      column_stats(ds.x_test, c.d, j, &m, &sd);
      EXPECT_NEAR(m, 0.0, 0.1) << c.name;
      EXPECT_NEAR(sd, 1.0, 0.1) << c.name;
    }
    double m, sd;
    column_stats(ds.y_train, 1, 0, &m, &sd);
    EXPECT_NEAR(m, 0.0, 1e-12) << c.name;
    EXPECT_NEAR(sd, 1.0, 1e-12) << c.name;
    // Every point, mapped back to the source units, gives the formula's value mapped forward.
    for (const auto* xs : {&ds.x_train, &ds.x_test}) {
      const auto& ys = xs == &ds.x_train ? ds.y_train : ds.y_test;
      for (std::size_t k = 0; k < ys.size(); ++k) {
        std::vector<double> src(c.d);
        for (int j = 0; j < c.d; ++j) {
          src[j] = (*xs)[k * c.d + j] * ds.x_scale[j] + ds.x_center[j];
          ASSERT_TRUE(src[j] >= c.lo[j] - 1e-9 && src[j] <= c.hi[j] + 1e-9) << c.name;
        }
        EXPECT_NEAR(ys[k], (c.f(src.data()) - ds.y_center) / ds.y_scale, 1e-9) << c.name;
      }
    }
    // evaluate_target works in the standardized units.
    const std::vector<double> back = evaluate_target(ds, ds.x_test);
    for (std::size_t k = 0; k < back.size(); ++k) EXPECT_NEAR(back[k], ds.y_test[k], 1e-12) << c.name;
  }
}

fs::path write_file(const fs::path& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir / name, std::ios::binary) << text;
  return dir / name;
}

// A CSV with d input columns and y; standardized on its training rows by default.
TEST(Dims, CsvWithSeveralInputColumns) {
  const fs::path dir = gs_test::tmp_dir();
  std::string text = "a,b,c,y\n";
  Rng rng(3);
  for (int k = 0; k < 200; ++k) {
    const double a = 10 * rng.uniform(), b = -5 + rng.uniform(), c = 1e3 * rng.normal();
    text += std::to_string(a) + "," + std::to_string(b) + "," + std::to_string(c) + "," +
            std::to_string(2 * a - b + 1e-3 * c + 7) + "\n";
  }
  const fs::path p = write_file(dir, "three.csv", text);
  const Dataset ds = load_csv_dataset(p.string(), 0.25, 0);
  ASSERT_EQ(ds.d, 3);
  ASSERT_EQ(ds.n_train(), 150);
  ASSERT_EQ(ds.n_test(), 50);
  ASSERT_TRUE(ds.standardized);
  for (int j = 0; j < 3; ++j) {
    double m, sd;
    column_stats(ds.x_train, 3, j, &m, &sd);
    EXPECT_NEAR(m, 0.0, 1e-12);
    EXPECT_NEAR(sd, 1.0, 1e-12);
    EXPECT_LE(ds.lo[j], -1.0);
    EXPECT_GE(ds.hi[j], 1.0);
  }
  double m, sd;
  column_stats(ds.y_train, 1, 0, &m, &sd);
  EXPECT_NEAR(m, 0.0, 1e-12);
  EXPECT_NEAR(sd, 1.0, 1e-12);
  // The test rows went through the same map: the linear relation holds in source units.
  for (int k = 0; k < ds.n_test(); ++k) {
    double src[3];
    for (int j = 0; j < 3; ++j) src[j] = ds.x_test[3 * k + j] * ds.x_scale[j] + ds.x_center[j];
    const double y = ds.y_test[k] * ds.y_scale + ds.y_center;
    EXPECT_NEAR(y, 2 * src[0] - src[1] + 1e-3 * src[2] + 7, 1e-4);
  }
  // Off: the file's own numbers.
  const Dataset raw = load_csv_dataset(p.string(), 0.25, 0, false);
  EXPECT_FALSE(raw.standardized);
  for (int k = 0; k < raw.n_train(); ++k)
    EXPECT_NEAR(raw.y_train[k], 2 * raw.x_train[3 * k] - raw.x_train[3 * k + 1] + 1e-3 * raw.x_train[3 * k + 2] + 7,
                1e-4);
  // A constant input column is centred only.
  const fs::path cst = write_file(dir, "const.csv", "x1,x2,y\n1,5,0\n2,5,1\n3,5,0\n4,5,1\n5,5,2\n");
  const Dataset cd = load_csv_dataset(cst.string(), 0.0, 0);
  EXPECT_EQ(cd.x_scale[1], 1.0);
  for (int k = 0; k < cd.n_train(); ++k) EXPECT_EQ(cd.x_train[2 * k + 1], 0.0);
}

TEST(Dims, CsvHeaderAndRowErrorsNameTheProblem) {
  const fs::path dir = gs_test::tmp_dir();
  const struct {
    const char* text;
    const char* mention;
  } cases[] = {
      {"x1,x2\n1,2\n3,4\n5,6\n", "header"},
      {"x,x,y\n1,2,3\n4,5,6\n7,8,9\n", "repeated"},
      {",x,y\n1,2,3\n4,5,6\n7,8,9\n", "no name"},
      {"\xEF\xBB\xBF\xEF\xBB\xBFx,y\n1,2\n4,5\n7,8\n", "byte-order mark"},
      {"a\tb,y\n1,2\n4,5\n7,8\n", "control character"},
      {"x1,x2,y\n1,2,3\n4,5\n7,8,9\n", "expected 3 columns, found 2"},
      {"x1,x2,y\n1,2,3\n4,5,6,7\n7,8,9\n", "expected 3 columns, found 4"},
      {"x1,x2,y\n1,2,3\n1,2,4\n1,2,5\n", "constant"},
      {"x1,x2,y\n1,2,3\n1,zz,4\n1,2,5\n", "'zz' is not a number"},
  };
  int k = 0;
  for (const auto& c : cases) {
    const fs::path p = write_file(dir, "bad" + std::to_string(k++) + ".csv", c.text);
    const std::string msg = message_of([&] { load_csv_dataset(p.string(), 0.0, 0); });
    EXPECT_NE(msg.find(c.mention), std::string::npos) << c.text << " -> " << msg;
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  }
}

// For d > 1, auto and random initialization give gate rows N(0, 1/d) whose hyperplanes pass
// through training points.
TEST(Dims, RandomInitPutsEachGateThroughATrainingPoint) {
  const Dataset ds = make_target_dataset("friedman1", 500, 0);
  const Shape s{Arch::kGlu, Act::kRelu, 5, 400};
  std::vector<double> th(num_params(s));
  for (InitKind kind : {InitKind::kAuto, InitKind::kRandom}) {
    init_params(s, kind, ds, 17, th.data());
    double ss = 0.0;
    for (int i = 0; i < s.n; ++i) {
      const double* G = th.data() + i * 5;
      const double g = th[s.n * 5 + i];
      for (int j = 0; j < 5; ++j) ss += G[j] * G[j];
      bool through = false;
      for (int k = 0; k < ds.n_train() && !through; ++k) {
        double a = g;
        for (int j = 0; j < 5; ++j) a += G[j] * ds.x_train[5 * k + j];
        through = std::fabs(a) < 1e-12;
      }
      EXPECT_TRUE(through) << "neuron " << i;
    }
    EXPECT_NEAR(ss / (s.n * 5), 1.0 / 5, 0.02);  // the entries' variance
  }
  // 1D keeps the MASO knots under auto.
  const Dataset d1 = make_target_dataset("sin4", 100, 0);
  const Shape s1{Arch::kMlp, Act::kRelu, 1, 4};
  std::vector<double> a(num_params(s1)), b(num_params(s1));
  init_params(s1, InitKind::kAuto, d1, 3, a.data());
  init_params(s1, InitKind::kMaso, d1, 3, b.data());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a[0], 1.0);
  EXPECT_EQ(a[1], -1.0);
}

}  // namespace
