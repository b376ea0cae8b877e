// The NTK spectra against LAPACK on the explicitly formed Gram matrix, the two Gram paths
// against each other, hand-built networks of known spectrum, the dynamics and the crossing
// rule, and `gpu-sweep ntk` through the program (its files and its bad input).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <vector>

#include "gpusweep/analysis/ntk.h"
#include "gpusweep/analysis/ntk_run.h"
#include "gpusweep/model/data.h"
#include "gpusweep/util/csv.h"
#include "program.h"
#include "solver/lapack.h"

namespace gs {
namespace {

namespace fs = std::filesystem;
using gs_test::lines;
using gs_test::run;
using gs_test::slurp;
using gs_test::tmp_dir;

// Eigenvalues (ascending) of a full symmetric m x m matrix by LAPACK dsyevd.
std::vector<double> lapack_eig(std::vector<double> a, int m) {
  std::vector<double> w(m);
  const char jobz = 'N', uplo = 'L';
  int lwork = -1, liwork = -1, info = 0, iq = 0;
  double wq = 0.0;
  dsyevd_(&jobz, &uplo, &m, a.data(), &m, w.data(), &wq, &lwork, &iq, &liwork, &info);
  lwork = static_cast<int>(wq);
  liwork = iq;
  std::vector<double> work(std::max(1, lwork));
  std::vector<int> iwork(std::max(1, liwork));
  dsyevd_(&jobz, &uplo, &m, a.data(), &m, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  EXPECT_EQ(info, 0);
  return w;
}

Batch one_net(const Dataset& ds, const Shape& s, const std::vector<double>& theta) {
  Batch b;
  b.datasets = {&ds};
  b.add(s, 0, theta.data());
  return b;
}

std::vector<double> random_params(const Shape& s, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> th(num_params(s));
  for (auto& v : th) v = rng.normal();
  return th;
}

// Compares two ascending spectra within tol * lambda_max; prints the first mismatches.
void expect_same_spectrum(const std::vector<double>& got, const std::vector<double>& ref, double tol) {
  ASSERT_EQ(got.size(), ref.size());
  const double scale = std::max(std::abs(ref.back()), 1e-300);
  int shown = 0;
  for (std::size_t k = 0; k < ref.size(); ++k)
    if (std::abs(got[k] - ref[k]) > tol * scale && shown++ < 5)
      ADD_FAILURE() << "eigenvalue " << k << ": " << got[k] << " against " << ref[k];
}

// A small network of every arch and activation with N <= P: the spectrum equals LAPACK's on
// K formed by three loops over J's rows, and its trace and Frobenius norm match K's own.
TEST(NtkSpectrum, MatchesLapackOnExplicitGram) {
  const Dataset ds = make_linear_problem(3, 12, 0.1, 7);
  for (Arch arch : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (Act act : {Act::kRelu, Act::kGelu, Act::kSilu}) {
      const Shape s{arch, act, 3, 5};
      const auto th = random_params(s, 11 + static_cast<int>(arch) * 7 + static_cast<int>(act));
      const int p = num_params(s), n = ds.n_train();
      ASSERT_LE(n, p);
      std::vector<double> J(static_cast<std::size_t>(n) * p);
      ntk_jacobian(s, th.data(), ds, J.data());
      const auto K = gram_reference(J.data(), n, p);
      const auto ref = lapack_eig(K, n);
      const auto sp = ntk_spectra_cpu(one_net(ds, s, th), 1);
      ASSERT_TRUE(sp[0].ok) << sp[0].reason;
      EXPECT_EQ(sp[0].gram, Gram::kJJt);
      expect_same_spectrum(sp[0].eig, ref, 1e-12);
      double trace = 0.0, frob = 0.0, sum = 0.0, sum2 = 0.0;
      for (int a = 0; a < n; ++a) {
        trace += K[a * n + a];
        for (int b = 0; b < n; ++b) frob += K[a * n + b] * K[a * n + b];
      }
      for (double v : sp[0].eig) sum += v, sum2 += v * v;
      EXPECT_NEAR(sum, trace, 1e-11 * trace);
      EXPECT_NEAR(sum2, frob, 1e-11 * frob);
    }
}

// N > P: the P x P matrix J^T J has the nonzero eigenvalues of the N x N K = J J^T, whose
// other N - P eigenvalues fall below the floor.
TEST(NtkSpectrum, TallPathHasTheNonzeroSpectrumOfK) {
  const Dataset ds = make_linear_problem(2, 40, 0.1, 3);
  const Shape s{Arch::kGlu, Act::kGelu, 2, 3};  // P = 7 * 3 + 1 = 22 < N = 40
  const auto th = random_params(s, 5);
  const int p = num_params(s), n = ds.n_train();
  ASSERT_GT(n, p);
  std::vector<double> J(static_cast<std::size_t>(n) * p);
  ntk_jacobian(s, th.data(), ds, J.data());
  std::vector<double> K(static_cast<std::size_t>(n) * n);
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      double v = 0.0;
      for (int q = 0; q < p; ++q) v += J[a * p + q] * J[b * p + q];
      K[a * n + b] = v;
    }
  const auto big = lapack_eig(K, n);
  const auto sp = ntk_spectra_cpu(one_net(ds, s, th), 1);
  ASSERT_TRUE(sp[0].ok) << sp[0].reason;
  EXPECT_EQ(sp[0].gram, Gram::kJtJ);
  ASSERT_EQ(static_cast<int>(sp[0].eig.size()), p);
  const std::vector<double> top(big.end() - p, big.end());
  expect_same_spectrum(sp[0].eig, top, 1e-11);
  for (int k = 0; k < n - p; ++k) EXPECT_LE(std::abs(big[k]), 1e-12 * big.back());
  // y is unchanged when neuron i's U_i, u_i scale by c and D_i by 1/c, so J has one null
  // direction per neuron: J^T J has exactly n zero eigenvalues, which the floor sets aside.
  const SpectrumSummary small = summarize_spectrum(sp[0].eig, n, p);
  ASSERT_TRUE(small.ok);
  EXPECT_EQ(small.below_floor, s.n);
  const double first_above = *std::find_if(big.begin(), big.end(), [&](double v) { return v > small.floor; });
  EXPECT_NEAR(small.lambda_min, first_above, 1e-9 * first_above);
  EXPECT_NEAR(small.cond, big.back() / first_above, 1e-9 * small.cond);
}

// An mlp of width 1 with D = 0 has the Jacobian row [0, 0, relu(x), 1] (G, g, D, d0), so K is
// known exactly. Points x = 1, -1: K = [[2, 1], [1, 1]], eigenvalues phi^2 and phi^-2, so
// cond = phi^4 (phi the golden ratio).
TEST(NtkSpectrum, HandBuiltConditionNumber) {
  Dataset ds;
  ds.d = 1;
  ds.x_train = {1.0, -1.0};
  ds.y_train = {0.0, 0.0};
  const Shape s{Arch::kMlp, Act::kRelu, 1, 1};
  const std::vector<double> th = {1.0, 0.0, 0.0, 0.0};  // G, g, D, d0
  const auto sp = ntk_spectra_cpu(one_net(ds, s, th), 1);
  ASSERT_TRUE(sp[0].ok);
  const double phi = (1.0 + std::sqrt(5.0)) / 2.0;
  ASSERT_EQ(sp[0].eig.size(), 2u);
  EXPECT_NEAR(sp[0].eig[0], 1.0 / (phi * phi), 1e-15);
  EXPECT_NEAR(sp[0].eig[1], phi * phi, 1e-14);
  const SpectrumSummary sum = summarize_spectrum(sp[0].eig, 2, 4);
  ASSERT_TRUE(sum.ok);
  EXPECT_NEAR(sum.cond, std::pow(phi, 4), 1e-13 * std::pow(phi, 4));
  EXPECT_EQ(sum.below_floor, 0);

  // A repeated point makes K singular: x = 1, 1, -1 gives K = [[2,2,1],[2,2,1],[1,1,1]], with
  // one zero eigenvalue and (5 -+ sqrt 17) / 2; the zero is below the floor and skipped.
  ds.x_train = {1.0, 1.0, -1.0};
  ds.y_train = {0.0, 0.0, 0.0};
  const auto sp3 = ntk_spectra_cpu(one_net(ds, s, th), 1);
  ASSERT_TRUE(sp3[0].ok);
  const SpectrumSummary s3 = summarize_spectrum(sp3[0].eig, 3, 4);
  ASSERT_TRUE(s3.ok);
  EXPECT_EQ(s3.below_floor, 1);
  EXPECT_NEAR(s3.lambda_min, (5.0 - std::sqrt(17.0)) / 2.0, 1e-14);
  EXPECT_NEAR(s3.lambda_max, (5.0 + std::sqrt(17.0)) / 2.0, 1e-14);
  EXPECT_NEAR(s3.cond, (5.0 + std::sqrt(17.0)) / (5.0 - std::sqrt(17.0)), 1e-12);
}

TEST(NtkSpectrum, SummaryFloorAndFailures) {
  // Five eigenvalues of a 5 x 5 K = J J^T with P = 7 parameters: the floor scales with
  // max(N, P) = 7, the longer of the matrix size and the inner dimension.
  const SpectrumSummary s = summarize_spectrum({-1e-14, 0.0, 1e-3, 2.0, 10.0}, 5, 7);
  ASSERT_TRUE(s.ok);
  EXPECT_DOUBLE_EQ(s.floor, 10.0 * 7 * 0x1p-52);
  EXPECT_EQ(s.below_floor, 2);
  EXPECT_DOUBLE_EQ(s.lambda_min, 1e-3);
  EXPECT_DOUBLE_EQ(s.cond, 1e4);
  // J^T J (P = 3 < N = 1000): the floor follows N, the inner dimension, and sets aside a
  // value far above the floor of the matrix size (3 * 2^-52) that rounding over 1000 terms
  // can reach.
  const SpectrumSummary t = summarize_spectrum({500 * 0x1p-52, 0.5, 1.0}, 1000, 3);
  ASSERT_TRUE(t.ok);
  EXPECT_DOUBLE_EQ(t.floor, 1000 * 0x1p-52);
  EXPECT_EQ(t.below_floor, 1);
  EXPECT_DOUBLE_EQ(t.lambda_min, 0.5);
  EXPECT_FALSE(summarize_spectrum({0.0, 0.0}, 2, 2).ok);
  EXPECT_FALSE(summarize_spectrum({1.0, NAN}, 2, 2).ok);
  EXPECT_FALSE(summarize_spectrum({}, 2, 2).ok);

  // A non-finite parameter fails its network, not the batch.
  const Dataset ds = make_linear_problem(2, 5, 0.1, 1);
  Batch b;
  b.datasets = {&ds};
  const Shape sh{Arch::kGlu, Act::kRelu, 2, 4};
  auto th = random_params(sh, 2);
  b.add(sh, 0, th.data());
  th[d_offset(sh)] = NAN;  // an output weight: a NaN gate weight behind a relu gives finite rows
  b.add(sh, 0, th.data());
  const auto sp = ntk_spectra_cpu(b, 2);
  EXPECT_TRUE(sp[0].ok);
  EXPECT_FALSE(sp[1].ok);
  EXPECT_NE(sp[1].reason.find("non-finite"), std::string::npos);
}

TEST(NtkSetup, LecunInitAndMatchedWidth) {
  const Shape s{Arch::kGlu, Act::kRelu, 50, 400};
  std::vector<double> th(num_params(s));
  init_lecun(s, 9, th.data());
  double g2 = 0.0, u2 = 0.0, d2 = 0.0, bias = 0.0;
  for (int q = 0; q < s.n * s.d; ++q) g2 += th[q] * th[q];
  for (int q = 0; q < s.n * s.d; ++q) u2 += th[factor_offset(s, 1) + q] * th[factor_offset(s, 1) + q];
  for (int i = 0; i < s.n; ++i) {
    d2 += th[d_offset(s) + i] * th[d_offset(s) + i];
    bias += std::abs(th[s.n * s.d + i]) + std::abs(th[factor_offset(s, 1) + s.n * s.d + i]);
  }
  EXPECT_NEAR(g2 / (s.n * s.d), 1.0 / s.d, 0.1 / s.d);  // var 1/d, 20000 samples
  EXPECT_NEAR(u2 / (s.n * s.d), 1.0 / s.d, 0.1 / s.d);  // the glu's U: LeCun too
  EXPECT_NEAR(d2 / s.n, 1.0 / s.n, 0.2 / s.n);          // var 1/n, 400 samples
  EXPECT_EQ(bias, 0.0);
  EXPECT_EQ(th.back(), 0.0);  // d0
  EXPECT_EQ(matched_width(Arch::kGlu, 20, 1000), 512);  // 1000 * 21 / 41 = 512.2
  EXPECT_EQ(matched_width(Arch::kMlp, 20, 1000), 1000);
  EXPECT_EQ(matched_width(Arch::kGqu, 20, 1000), 344);  // 1000 * 21 / 61 = 344.3
  EXPECT_EQ(matched_width(Arch::kGlu, 1, 1), 1);
}

// Gradient descent at eta = c N / lambda_max: full batch lowers the loss and, on a problem
// linear in its parameters, follows the closed form of the linearized dynamics.
TEST(NtkDynamics, GradientDescentFollowsTheKernel) {
  // Only d0 and D of a width-1 mlp with D = 0 move in the first step (the gate's gradient
  // carries a factor D), so the first step is r1 = (I - eta K / N) r0 exactly.
  Dataset ds;
  ds.d = 1;
  ds.name = "hand";
  ds.x_train = {1.0, -1.0};
  ds.y_train = {1.0, 0.5};
  const Shape s{Arch::kMlp, Act::kRelu, 1, 1};
  const std::vector<double> th = {1.0, 0.0, 0.0, 0.0};
  Batch b = one_net(ds, s, th);
  const double phi2 = (3.0 + std::sqrt(5.0)) / 2.0;  // lambda_max of K = [[2,1],[1,1]]
  DynamicsOptions opt;
  opt.steps = 1;
  opt.lr_c = 0.5;
  opt.threads = 1;
  const auto c = train_gd(b, step_sizes(b, {phi2}, opt), opt);
  ASSERT_EQ(c[0].loss.size(), 2u);
  const double eta = 0.5 * 2 / phi2;
  EXPECT_DOUBLE_EQ(c[0].eta, eta);
  // r0 = -y; r1 = r0 - (eta / N) K r0.
  const double r0[2] = {-1.0, -0.5};
  const double K[2][2] = {{2.0, 1.0}, {1.0, 1.0}};
  double r1[2];
  for (int a = 0; a < 2; ++a) r1[a] = r0[a] - eta / 2 * (K[a][0] * r0[0] + K[a][1] * r0[1]);
  EXPECT_NEAR(c[0].loss[0], 0.25 * (r0[0] * r0[0] + r0[1] * r0[1]), 1e-15);
  EXPECT_NEAR(c[0].loss[1], 0.25 * (r1[0] * r1[0] + r1[1] * r1[1]), 1e-15);

  // A real problem: full batch and SGD both lower the loss; a step far past 2 / lambda diverges.
  const Dataset lin = make_linear_problem(5, 60, 0.1, 4);
  const Shape g{Arch::kGlu, Act::kRelu, 5, 30};
  std::vector<double> p0(num_params(g));
  init_lecun(g, 3, p0.data());
  const double lmax = summarize_spectrum(ntk_spectra_cpu(one_net(lin, g, p0), 1)[0].eig, 60, num_params(g)).lambda_max;
  for (int batch : {0, 10}) {
    Batch bb = one_net(lin, g, p0);
    DynamicsOptions o;
    o.steps = 200;
    o.record_every = 50;
    o.batch = batch;
    const auto cc = train_gd(bb, step_sizes(bb, {lmax}, o), o);
    EXPECT_EQ(cc[0].loss.size(), 5u);
    EXPECT_FALSE(cc[0].diverged);
    EXPECT_LT(cc[0].loss.back(), 0.2 * cc[0].loss.front()) << "batch " << batch;
  }
  Batch bad = one_net(lin, g, p0);
  DynamicsOptions o;
  o.steps = 300;
  o.lr_c = 20.0;
  EXPECT_TRUE(train_gd(bad, step_sizes(bad, {lmax}, o), o)[0].diverged);
}

// SGD with a small batch at the default c: a minibatch's curvature reaches max_k K_kk / B,
// far above lambda_max(K) / N, so the full-batch step c N / lambda_max would diverge; the
// minibatch rule takes the larger curvature and stays stable.
TEST(NtkDynamics, SmallBatchSgdIsStableAtTheDefaultStep) {
  const Dataset lin = make_linear_problem(5, 60, 0.1, 4);
  const Shape g{Arch::kMlp, Act::kRelu, 5, 30};
  std::vector<double> p0(num_params(g));
  init_lecun(g, 3, p0.data());
  const double lmax = summarize_spectrum(ntk_spectra_cpu(one_net(lin, g, p0), 1)[0].eig, 60, num_params(g)).lambda_max;
  const double diag = max_kernel_diagonal(g, p0.data(), lin);
  DynamicsOptions o;  // lr_c 0.5, the default
  o.steps = 600;
  o.record_every = 100;
  o.batch = 1;
  o.threads = 1;
  ASSERT_GT(o.lr_c * 60 / lmax * diag, 2.0) << "the full-batch step would not be unstable here";
  Batch b = one_net(lin, g, p0);
  const auto eta = step_sizes(b, {lmax}, o);
  EXPECT_DOUBLE_EQ(eta[0], o.lr_c / std::max(lmax / 60, diag / o.batch));
  const auto c = train_gd(b, eta, o);
  EXPECT_FALSE(c[0].diverged);
  EXPECT_TRUE(std::isfinite(c[0].loss.back()));
  EXPECT_LT(c[0].loss.back(), c[0].loss.front());
  // Full batch keeps c N / lambda_max.
  o.batch = 0;
  EXPECT_DOUBLE_EQ(step_sizes(b, {lmax}, o)[0], o.lr_c * 60 / lmax);
}

TEST(NtkDynamics, CrossingRule) {
  const std::vector<int> steps = {0, 10, 20, 30, 40};
  // The gated curve is behind early and ahead from step 30 on.
  Crossing c = find_crossing(steps, {1.0, 0.5, 0.3, 0.2, 0.1}, {1.0, 0.6, 0.35, 0.15, 0.05});
  EXPECT_TRUE(c.found);
  EXPECT_EQ(c.step, 30);
  // Ahead from the first step: no crossing.
  c = find_crossing(steps, {1.0, 0.5, 0.3, 0.2, 0.1}, {1.1, 0.4, 0.2, 0.1, 0.05});
  EXPECT_FALSE(c.found);
  EXPECT_NE(c.note.find("first step"), std::string::npos);
  // Ahead for a while, behind at the end: no crossing.
  c = find_crossing(steps, {1.0, 0.5, 0.3, 0.2, 0.1}, {1.0, 0.6, 0.25, 0.15, 0.2});
  EXPECT_FALSE(c.found);
  // A diverged base curve (NaN) counts as +infinity: the gated one is below there.
  c = find_crossing(steps, {1.0, 0.5, 0.3, NAN, NAN}, {1.0, 0.6, 0.35, 0.3, 0.2});
  EXPECT_TRUE(c.found);
  EXPECT_EQ(c.step, 30);
  EXPECT_DOUBLE_EQ(median_of({3.0, NAN, 1.0}), 3.0);
  EXPECT_DOUBLE_EQ(median_of({4.0, 1.0, 2.0, 3.0}), 2.5);
}

// ---- through the program ---------------------------------------------------------------------

TEST(NtkCli, WritesTheTablesWithTheRequiredColumns) {
  const auto dir = tmp_dir();
  const auto out = dir / "run";
  const auto r = run("ntk --arch mlp,glu --activation relu,gelu --dims 3,5 --points 12 --widths 8,16 --seeds 2 "
                     "--steps 30 --record-every 10 --spectra-after --device cpu --no-plots --out " + out.string(),
                     dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const CsvTable t = read_csv_table((out / "ntk.csv").string());
  for (const char* col : {"arch", "activation", "d", "width", "params", "seed", "lambda_max", "lambda_min", "cond",
                          "below_floor", "floor", "eta", "status"})
    EXPECT_GE(t.column(col), 0);
  EXPECT_EQ(t.rows.size(), 2u * 2 * 2 * 2 * 2 * 2);  // arch, act, d, width, seed, init + trained
  const int c_cond = t.column("cond"), c_max = t.column("lambda_max"), c_min = t.column("lambda_min"),
            c_status = t.column("status"), c_p = t.column("params"), c_arch = t.column("arch"),
            c_w = t.column("width"), c_d = t.column("d");
  for (const auto& row : t.rows) {
    EXPECT_EQ(row[c_status], "ok");
    const double cond = parse_double_field(row[c_cond], "cond");
    EXPECT_NEAR(cond, parse_double_field(row[c_max], "max") / parse_double_field(row[c_min], "min"), 1e-9 * cond);
    const Arch a = row[c_arch] == "mlp" ? Arch::kMlp : Arch::kGlu;
    EXPECT_EQ(parse_int_field(row[c_p], "p"),
              num_params(Shape{a, Act::kRelu, static_cast<int>(parse_int_field(row[c_d], "d")),
                               static_cast<int>(parse_int_field(row[c_w], "w"))}));
  }
  // 2 x 2 x 2 x 2 x 2 networks, 4 records each (0, 10, 20, 30).
  EXPECT_EQ(lines(slurp(out / "ntk_loss.csv")), 1 + 32 * 4);
  const CsvTable x = read_csv_table((out / "ntk_crossing.csv").string());
  EXPECT_EQ(x.rows.size(), 2u * 2 * 2);  // activation, d, width
  EXPECT_GT(lines(slurp(out / "ntk_hist.csv")), 1);
  EXPECT_TRUE(fs::exists(out / "ntk_summary.json"));
  // The figures, drawn again by `plot` (needs gnuplot on PATH, as test_plots does).
  const auto p = run("plot " + out.string(), dir);
  ASSERT_EQ(p.code, 0) << p.err;
  for (const char* f : {"ntk_cond_vs_d.png", "ntk_cond_vs_width.svg", "ntk_hist_relu_d3_w8.png",
                        "ntk_hist_gelu_d5_w16_trained.png", "ntk_loss_relu_d3_w8.png"})
    EXPECT_TRUE(fs::exists(out / "plots" / f)) << f;
}

// --lr-rule shared: the archs of one (d, activation, width, seed) step with the same eta, that
// of the largest lambda_max among them; own: each its own.
TEST(NtkCli, SharedLearningRateIsEqualWithinAGroup) {
  const auto dir = tmp_dir();
  for (const char* rule : {"shared", "own"}) {
    const auto out = dir / rule;
    const auto r = run(std::string("ntk --arch mlp,glu --dims 3 --points 10 --widths 6 --seeds 2 --steps 3 --lr-rule ") +
                           rule + " --device cpu --no-plots -q --out " + out.string(), dir);
    ASSERT_EQ(r.code, 0) << r.err;
    const CsvTable t = read_csv_table((out / "ntk.csv").string());
    const int c_arch = t.column("arch"), c_seed = t.column("seed"), c_eta = t.column("eta"), c_max = t.column("lambda_max");
    std::map<std::string, std::map<std::string, std::pair<double, double>>> by_seed;  // seed -> arch -> (eta, lmax)
    for (const auto& row : t.rows)
      by_seed[row[c_seed]][row[c_arch]] = {parse_double_field(row[c_eta], "eta"), parse_double_field(row[c_max], "max")};
    ASSERT_EQ(by_seed.size(), 2u);
    for (const auto& [seed, archs] : by_seed) {
      const auto [eta_m, lmax_m] = archs.at("mlp");
      const auto [eta_g, lmax_g] = archs.at("glu");
      ASSERT_NE(lmax_m, lmax_g);
      if (std::string(rule) == "shared") {
        EXPECT_EQ(eta_m, eta_g) << "seed " << seed;
        EXPECT_DOUBLE_EQ(eta_m, 0.5 * 10 / std::max(lmax_m, lmax_g)) << "seed " << seed;
      } else {
        EXPECT_DOUBLE_EQ(eta_m, 0.5 * 10 / lmax_m) << "seed " << seed;
        EXPECT_DOUBLE_EQ(eta_g, 0.5 * 10 / lmax_g) << "seed " << seed;
      }
    }
  }
}

TEST(NtkCli, MatchedWidthsAndOneDimensionalTargets) {
  const auto dir = tmp_dir();
  auto r = run("ntk --arch mlp,glu --dims 20 --points 10 --widths 100 --match-params --device cpu --no-plots -q "
               "--out " + (dir / "m").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const CsvTable t = read_csv_table((dir / "m" / "ntk.csv").string());
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0][t.column("width")], "100");
  EXPECT_EQ(t.rows[1][t.column("width")], "51");  // round(100 * 21 / 41)
  // A 1D target of the sweeps, MASO init.
  r = run("ntk --problem sin4 --arch mlp,glu --points 30 --widths 10 --device cpu --no-plots -q --out " +
              (dir / "s").string(), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const CsvTable s = read_csv_table((dir / "s" / "ntk.csv").string());
  ASSERT_EQ(s.rows.size(), 2u);
  EXPECT_EQ(s.rows[0][s.column("d")], "1");
  EXPECT_EQ(s.rows[0][s.column("problem")], "sin4");
}

TEST(NtkCli, BadInputGivesOneLineAndNoOutput) {
  const auto dir = tmp_dir();
  // Each case with the text its one line must hold. The base options (--dims 3 --points 10
  // --widths 4 --device cpu) are added only where the case does not set them itself, so that each case
  // fails for its own reason and not for a repeated option.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--dims 0", "is not an input dimension"},
      {"--dims 3,x", "is not an input dimension"},
      {"--widths abc", "--widths"},
      {"--widths 0", "--widths"},
      {"--arch foo", "--arch"},
      {"--arch spline1", "not the baseline"},
      {"--activation tanh", "--activation"},
      {"--batch 50 --steps 5", "is more than --points"},
      {"--steps -1", "--steps must be from 0"},
      {"--lr-c 0", "--lr-c must be above 0"},
      {"--lr-c 1e7", "below 1e6"},
      {"--lr-rule fast --steps 5", "want own or shared"},
      {"--spectra-after", "needs training"},
      {"--problem sin4 --dims 5", "is a 1D target"},
      {"--problem 'x+' ", "x+"},
      {"--device tpu", "unknown device"},
      {"--points 1", "--points"},
      {"--noise -1", "--noise must be finite and >= 0"},
      {"--noise nan", "--noise"},
      {"--hist-bins 0", "--hist-bins must be from 1"},
      {"--record-every -1 --steps 5", "--record-every must be >= 0"},
      // The options of the dynamics without --steps.
      {"--batch 5", "--batch sets up training"},
      {"--lr-rule shared", "--lr-rule sets up training"},
      {"--record-every 5", "--record-every sets up training"},
      {"--batch 5 --steps 0", "--batch sets up training"},
      // Runs out of reach, refused before anything is built: more networks than an int counts,
      // and more memory than half the machine's (a million-parameter network, 100000 seeds).
      {"--widths 1:100000 --seeds 1000000", "networks (dims x archs x activations x widths x seeds) is more than"},
      {"--dims 1000 --widths 1000 --seeds 100000", "of memory, more than half of this machine's"},
      {"--dims 1000 --widths 100000 --points 20", "its Jacobian would need"},
  };
  const std::vector<std::pair<std::string, std::string>> base = {{"--dims", "3"}, {"--points", "10"}, {"--widths", "4"},
                                                                   {"--device", "cpu"}};
  for (const auto& [args, text] : cases) {
    std::string cmd = "ntk ";
    for (const auto& [opt, value] : base)
      if (args.find(opt + " ") == std::string::npos && !(opt == "--dims" && args.find("--problem") != std::string::npos))
        cmd += opt + " " + value + " ";
    const auto out = dir / "never";
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = run(cmd + args + " --no-plots --out " + out.string(), dir);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(r.code, 0) << args;
    EXPECT_EQ(lines(r.err), 1) << args << ": " << r.err;
    EXPECT_EQ(r.err.rfind("gpu-sweep: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_NE(r.err.find(text), std::string::npos) << args << ": " << r.err;
    EXPECT_FALSE(fs::exists(out)) << args;
    EXPECT_LT(secs, 10.0) << args << ": the refusal must come before the work";
  }
  // An existing run is not overwritten without --overwrite.
  const auto out = dir / "done";
  ASSERT_EQ(run("ntk --dims 3 --points 10 --widths 4 --no-plots -q --device cpu --out " + out.string(), dir).code, 0);
  const auto r = run("ntk --dims 3 --points 10 --widths 4 --no-plots -q --device cpu --out " + out.string(), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--overwrite"), std::string::npos);
}

// --overwrite removes the earlier run's files and figures: a spectra-only run after a run
// with dynamics leaves no loss files behind for `plot` to draw. And neither kind of run lands
// on the other's directory without --overwrite.
TEST(NtkCli, OverwriteRemovesTheEarlierRunAndKindsDoNotMix) {
  const auto dir = tmp_dir();
  const auto out = dir / "run";
  const std::string base = "ntk --dims 3 --points 10 --widths 4 --device cpu --no-plots -q --out " + out.string();
  ASSERT_EQ(run(base + " --steps 5", dir).code, 0);
  ASSERT_TRUE(fs::exists(out / "ntk_loss.csv"));
  fs::create_directories(out / "plots");
  std::ofstream(out / "plots" / "ntk_loss_relu_d3_w4.png") << "old";
  const auto r = run(base + " --overwrite", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "ntk.csv"));
  for (const char* f : {"ntk_loss.csv", "ntk_loss_median.csv", "ntk_crossing.csv", "plots/ntk_loss_relu_d3_w4.png"})
    EXPECT_FALSE(fs::exists(out / f)) << f;

  // A sweep's directory refuses an ntk run, and an ntk run's directory a sweep.
  const auto sweep = dir / "sweep";
  fs::create_directories(sweep);
  std::ofstream(sweep / "results.csv") << "arch\n";
  auto x = run("ntk --dims 3 --points 10 --widths 4 --device cpu --no-plots -q --out " + sweep.string(), dir);
  EXPECT_NE(x.code, 0);
  EXPECT_NE(x.err.find("--overwrite"), std::string::npos) << x.err;
  EXPECT_FALSE(fs::exists(sweep / "ntk.csv"));
  x = run("--arch mlp --widths 4 --points 50 --no-plots -q --out " + out.string(), dir);
  EXPECT_NE(x.code, 0);
  EXPECT_NE(x.err.find("--overwrite"), std::string::npos) << x.err;
  EXPECT_FALSE(fs::exists(out / "results.csv"));
}

}  // namespace
}  // namespace gs
