// Independent least-squares references for the tests: LAPACK's SVD solver dgelsd on an
// explicit matrix, and the training MSE by direct evaluation.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gpusweep/model/data.h"
#include "gpusweep/model/network.h"
#include "solver/lapack.h"

namespace gs {

// Minimum-norm least-squares solution of A x = b (rows x m, column-major) by dgelsd with
// numpy lstsq's threshold, columns scaled to unit norm first (the norm that least_squares_values
// minimizes).
inline std::vector<double> svd_solve(int rows, int m, std::vector<double> A, std::vector<double> b) {
  std::vector<double> c(m, 1.0);
  for (int q = 0; q < m; ++q) {
    double s = 0.0;
    for (int k = 0; k < rows; ++k) s += A[k + q * rows] * A[k + q * rows];
    if (s > 0.0) c[q] = std::sqrt(s);
    for (int k = 0; k < rows; ++k) A[k + q * rows] /= c[q];
  }
  const int ldb = std::max(rows, m), nrhs = 1;
  b.resize(ldb, 0.0);
  std::vector<double> sv(std::min(rows, m));
  const double rcond = 2.220446049250313e-16 * std::max(rows, m);
  int rank = 0, info = 0, lwork = -1;
  double wq = 0.0;
  int iwq = 0;
  dgelsd_(&rows, &m, &nrhs, A.data(), &rows, b.data(), &ldb, sv.data(), &rcond, &rank, &wq, &lwork,
          &iwq, &info);
  lwork = static_cast<int>(wq);
  std::vector<double> work(lwork);
  std::vector<int> iwork(std::max(1, iwq));
  dgelsd_(&rows, &m, &nrhs, A.data(), &rows, b.data(), &ldb, sv.data(), &rcond, &rank,
          work.data(), &lwork, iwork.data(), &info);
  EXPECT_EQ(info, 0);
  std::vector<double> x(m);
  for (int q = 0; q < m; ++q) x[q] = b[q] / c[q];
  return x;
}

inline double train_mse(const Shape& s, const double* th, const Dataset& ds) {
  double sse = 0.0;
  for (int k = 0; k < ds.n_train(); ++k) {
    const double r = evaluate(s, th, &ds.x_train[static_cast<std::size_t>(k) * s.d]) - ds.y_train[k];
    sse += r * r;
  }
  return sse / ds.n_train();
}

// theta with the parameters cols replaced by their least-squares optimum with the others
// held: the explicit Jacobian of the training points and dgelsd.
inline std::vector<double> reference_solve(const Shape& s, std::vector<double> th,
                                           const std::vector<int>& cols, const Dataset& ds) {
  const int n = ds.n_train(), m = static_cast<int>(cols.size());
  std::vector<double> A(static_cast<std::size_t>(n) * m), rhs(n), row(num_params(s));
  for (int k = 0; k < n; ++k) {
    const double y = jacobian_row(s, th.data(), &ds.x_train[static_cast<std::size_t>(k) * s.d], row.data());
    double lin = 0.0;
    for (int q = 0; q < m; ++q) {
      A[k + static_cast<std::size_t>(q) * n] = row[cols[q]];
      lin += row[cols[q]] * th[cols[q]];
    }
    rhs[k] = ds.y_train[k] - (y - lin);  // the target less the part the columns do not hold
  }
  const std::vector<double> x = svd_solve(n, m, A, rhs);
  for (int q = 0; q < m; ++q) th[cols[q]] = x[q];
  return th;
}

}  // namespace gs
