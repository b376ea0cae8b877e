// Host implementation of the damped, Jacobi-scaled Cholesky Newton solve (dpotrf/dpotrs).
#include "gpusweep/solver/solve.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "solver/lapack.h"

namespace gs {

double jacobi_scale(int m, const double* H, const double* g, double* scale) {
  double dmax = 0.0;
  for (int i = 0; i < m; ++i) dmax = std::fmax(dmax, std::fabs(H[i + i * m]));
  double gnorm = 0.0;
  bool bad = false;
  for (int i = 0; i < m; ++i) {
    const double hii = std::fabs(H[i + i * m]);
    if (hii > kSingularRel * dmax && hii > 0.0) {
      scale[i] = 1.0 / std::sqrt(hii);
      gnorm = std::fmax(gnorm, std::fabs(g[i]) * scale[i]);
    } else {
      scale[i] = 0.0;
    }
    if (!std::isfinite(H[i + i * m]) || !std::isfinite(g[i])) bad = true;
  }
  return bad ? NAN : gnorm;
}

int damped_solve(int m, const double* H, const double* g, const double* scale, double lambda,
                 double* work, double* step, double* gdotp) {
  // Lower triangle of A = S H S + lambda I; singular rows become identity rows.
  for (int j = 0; j < m; ++j) {
    const double sj = scale[j];
    for (int i = j; i < m; ++i) {
      double a = scale[i] * H[i + j * m] * sj;
      if (i == j) a = sj == 0.0 ? 1.0 : a + lambda;
      work[i + j * m] = a;
    }
    step[j] = -g[j] * sj;
  }
  int info = 0;
  dpotrf_("L", &m, work, &m, &info);
  if (info < 0) throw std::logic_error("dpotrf: illegal argument " + std::to_string(-info));
  if (info > 0) return info;
  const int one = 1;
  dpotrs_("L", &m, &one, work, &m, step, &m, &info);
  if (info < 0) throw std::logic_error("dpotrs: illegal argument " + std::to_string(-info));
  double gd = 0.0;
  for (int i = 0; i < m; ++i) {
    step[i] *= scale[i];
    gd += g[i] * step[i];
  }
  *gdotp = gd;
  return 0;
}

}  // namespace gs
