// The damped, Jacobi-scaled Cholesky solve on SPD, singular (dead neuron), rank-deficient
// (the MASO D-stage trap) and indefinite systems.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpusweep/solver/solve.h"

namespace gs {
namespace {

struct System {
  int m;
  std::vector<double> H, g;  // column-major, both triangles
};

// H = A^T A for a given A (rows x m), g given.
System gram(int rows, int m, const std::vector<double>& A, const std::vector<double>& g) {
  System s{m, std::vector<double>(m * m, 0.0), g};
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      for (int k = 0; k < rows; ++k) s.H[i + j * m] += A[k * m + i] * A[k * m + j];
  return s;
}

std::vector<double> solve(const System& s, double lambda, int* info, double* gd) {
  std::vector<double> scale(s.m), work(s.m * s.m), step(s.m, NAN);
  jacobi_scale(s.m, s.H.data(), s.g.data(), scale.data());
  *info = damped_solve(s.m, s.H.data(), s.g.data(), scale.data(), lambda, work.data(), step.data(), gd);
  return step;
}

TEST(DampedSolve, SpdSystemGivesTheNewtonStep) {
  // Badly scaled SPD matrix: Jacobi scaling must make it harmless.
  System s{3, {4e6, 2e3, 0.0, 2e3, 5.0, 1e-3, 0.0, 1e-3, 2e-6}, {1.0, -2.0, 3e-6}};
  int info;
  double gd;
  const auto step = solve(s, 0.0, &info, &gd);
  ASSERT_EQ(info, 0);
  for (int i = 0; i < 3; ++i) {
    double hs = 0.0;
    for (int j = 0; j < 3; ++j) hs += s.H[i + j * 3] * step[j];
    EXPECT_NEAR(hs, -s.g[i], 1e-10 * (1.0 + std::fabs(s.g[i]))) << "row " << i;
  }
  EXPECT_LT(gd, 0.0);
}

TEST(DampedSolve, DeadNeuronRowGetsZeroStep) {
  // Row/column 1 is exactly zero (a neuron active on no point).
  System s{3, {2.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 1.0}, {1.0, 0.0, -1.0}};
  std::vector<double> scale(3);
  jacobi_scale(3, s.H.data(), s.g.data(), scale.data());
  EXPECT_EQ(scale[1], 0.0);
  int info;
  double gd;
  const auto step = solve(s, 0.0, &info, &gd);
  ASSERT_EQ(info, 0);
  EXPECT_EQ(step[1], 0.0);
  // The live 2x2 block is solved exactly: [2 .5; .5 1] x = -[1; -1].
  EXPECT_NEAR(step[0], -6.0 / 7.0, 1e-14);
  EXPECT_NEAR(step[2], 10.0 / 7.0, 1e-14);
}

TEST(DampedSolve, RankDeficientNormalMatrixNeedsDampingAndThenGivesAConsistentStep) {
  // Columns 0 and 2 of A are equal (the first MASO neuron and d0 on [-1, 1]): H is singular
  // with non-zero rows, which row elimination cannot see.
  const int rows = 4, m = 3;
  const std::vector<double> A = {1, 0.1, 1, 1, 0.5, 1, 1, 0.9, 1, 1, 1.3, 1};
  const std::vector<double> r = {0.3, -0.2, 0.1, 0.4};
  std::vector<double> g(m, 0.0);
  for (int k = 0; k < rows; ++k)
    for (int i = 0; i < m; ++i) g[i] += A[k * m + i] * r[k];
  const System s = gram(rows, m, A, g);
  int info;
  double gd;
  solve(s, 0.0, &info, &gd);
  EXPECT_GT(info, 0) << "an exactly singular matrix must not factorize undamped";
  const auto step = solve(s, 1e-10, &info, &gd);
  ASSERT_EQ(info, 0);
  EXPECT_LT(gd, 0.0);
  // The step solves the least-squares problem: A step = -r projected, so H step = -g.
  for (int i = 0; i < m; ++i) {
    double hs = 0.0;
    for (int j = 0; j < m; ++j) hs += s.H[i + j * m] * step[j];
    EXPECT_NEAR(hs, -g[i], 1e-7);
  }
  // Minimum-norm-like: the two equal columns share the step equally.
  EXPECT_NEAR(step[0], step[2], 1e-6);
}

TEST(DampedSolve, IndefiniteSystemFailsUntilDampedThenDescends) {
  System s{2, {1.0, 2.0, 2.0, 1.0}, {1.0, 0.5}};  // eigenvalues 3 and -1
  int info;
  double gd;
  solve(s, 0.0, &info, &gd);
  EXPECT_GT(info, 0);
  solve(s, 0.5, &info, &gd);
  EXPECT_GT(info, 0);
  const auto step = solve(s, 10.0, &info, &gd);
  ASSERT_EQ(info, 0);
  EXPECT_LT(gd, 0.0);
  EXPECT_TRUE(std::isfinite(step[0]) && std::isfinite(step[1]));
}

TEST(DampedSolve, NonFiniteInputIsReported) {
  System s{2, {1.0, 0.0, 0.0, NAN}, {1.0, 1.0}};
  std::vector<double> scale(2);
  EXPECT_TRUE(std::isnan(jacobi_scale(2, s.H.data(), s.g.data(), scale.data())));
  // A bad first row is not forgotten by the rows after it.
  System t{3, {1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 9.0}, {NAN, 1.0, 1.0}};
  std::vector<double> sc(3);
  EXPECT_TRUE(std::isnan(jacobi_scale(3, t.H.data(), t.g.data(), sc.data())));
}

}  // namespace
}  // namespace gs
