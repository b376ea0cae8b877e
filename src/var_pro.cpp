// Host implementation of the variable-projection step (var_pro.h).
#include "gpusweep/var_pro.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpusweep/relu1d.h"
#include "lapack.h"

namespace gs {

std::vector<int> linear_columns(const Shape& s) {
  const int nf = num_factors(s.arch);
  std::vector<int> cols;
  const int b = nf == 1 ? d_offset(s) : factor_offset(s, nf - 1);
  const int e = nf == 1 ? num_params(s) : d_offset(s);
  for (int q = b; q < e; ++q) cols.push_back(q);
  if (nf > 1) cols.push_back(num_params(s) - 1);
  return cols;
}

int min_active_points(const Shape& s) { return 2 * (column_degree(s.arch) + 1); }

EdgeKind kink_place(const Shape& s, const double* theta, const Points1d& pts, int i) {
  const NeuronLines L = neuron_lines(s, theta, i);
  if (L.W[0] == 0.0 || pts.n < 2) return EdgeKind::kOutside;
  const double kink = -L.w[0] / L.W[0];
  const int at = static_cast<int>(std::lower_bound(pts.x, pts.x + pts.n, kink) - pts.x);
  if (at == 0 || at == pts.n) return kink < pts.lo || kink > pts.hi ? EdgeKind::kOutside : EdgeKind::kThin;
  return std::min(at, pts.n - at) < min_active_points(s) ? EdgeKind::kThin : EdgeKind::kInside;
}

void drop_thin_neurons(const Shape& s, const double* theta, const Points1d& pts,
                       std::vector<int>* cols) {
  if (!relu1d_fast_path(s)) return;
  std::vector<char> thin(s.n, 0);
  for (int i = 0; i < s.n; ++i) thin[i] = kink_place(s, theta, pts, i) == EdgeKind::kThin;
  cols->erase(std::remove_if(cols->begin(), cols->end(),
                             [&](int q) {
                               int i, k;
                               return param_owner(s, q, &i, &k) && thin[i];
                             }),
              cols->end());
}

void var_pro_roles(const Shape& s, const double* theta, const Points1d* pts, Role* role) {
  const int p = num_params(s);
  const int nf = num_factors(s.arch);
  for (int q = 0; q < p; ++q) role[q] = Role::kNonlinear;
  if (nf > 1)
    for (int q = d_offset(s); q < p - 1; ++q) role[q] = Role::kFixed;
  for (int q : linear_columns(s)) role[q] = Role::kLinear;
  if (pts != nullptr && relu1d_fast_path(s)) {
    // A neuron's gate and middle factors come before its last factor in its local order.
    const int nonlinear = (nf == 1 ? 1 : nf - 1) * (s.d + 1);
    for (int i = 0; i < s.n; ++i) {
      const EdgeKind place = kink_place(s, theta, *pts, i);
      if (place == EdgeKind::kInside) continue;
      // Outside: the gate and middle factors; thin: all (its linear columns stay at zero).
      const int fixed = place == EdgeKind::kOutside ? nonlinear : neuron_num_params(s);
      for (int k = 0; k < fixed; ++k) role[neuron_param_index(s, i, k)] = Role::kFixed;
    }
  }
  for (int i = 0; i < s.n; ++i) {
    // Gate (relu only: positive homogeneity): its largest weight. Middle factors (against the
    // last one's scale): their largest entry, bias included.
    for (int b = 0; b + 1 < nf || (b == 0 && nf == 1); ++b) {
      if (b == 0 && s.act != Act::kRelu) continue;
      int best = -1;
      double big = 0.0;
      const int count = b == 0 ? s.d : s.d + 1;
      for (int j = 0; j < count; ++j) {
        const int q = neuron_param_index(s, i, b * (s.d + 1) + j);
        if (std::fabs(theta[q]) > big) {
          big = std::fabs(theta[q]);
          best = q;
        }
      }
      if (best >= 0) role[best] = Role::kFixed;
    }
  }
}

void knot_curvature(const Shape& s, const double* theta, const double* xs, const double* ys,
                    int npts, int half, std::vector<HessEntry>* entries) {
  if (!relu1d_fast_path(s)) return;
  for (int i = 0; i < s.n; ++i) {
    const int iG = factor_offset(s, 0) + i, ig = factor_offset(s, 0) + s.n + i;
    const double G = theta[iG];
    if (G == 0.0) continue;
    const double kink = -theta[ig] / G;
    const int pos = static_cast<int>(std::lower_bound(xs, xs + npts, kink) - xs);
    const int lo = pos - half, hi = pos + half;
    if (lo < 1 || hi + 1 > npts) continue;  // outside the points, or too near their ends
    double sum = 0.0;
    for (int k = lo; k < hi; ++k) {
      const NeuronEval ev = eval_neuron(s, theta, &xs[k], i);  // q m: what multiplies relu
      sum += (evaluate(s, theta, &xs[k]) - ys[k]) * ev.q * ev.m;
    }
    // The density of the points from a window four times as wide (as far as the data
    // reach): the points wlo..whi-1 own the x between the midpoints at its ends.
    const int wlo = std::max(1, pos - 4 * half), whi = std::min(npts - 1, pos + 4 * half);
    const double span = 0.5 * (xs[whi] + xs[whi - 1]) - 0.5 * (xs[wlo] + xs[wlo - 1]);
    if (!(span > 0.0)) continue;
    const double density = (whi - wlo) / (static_cast<double>(npts) * span);
    const double v = 2.0 * (sum / (hi - lo)) * density / std::fabs(G);
    // d(G x + g)/d(G, g) at the kink is (kink, 1).
    entries->push_back({ig, ig, v});
    entries->push_back({iG, iG, v * kink * kink});
    entries->push_back({iG, ig, v * kink});
    entries->push_back({ig, iG, v * kink});
  }
}

void reduced_system(int m, const double* H, const double* g, const double* scale, const Role* role,
                    const std::vector<HessEntry>& extra, ReducedSystem* out) {
  std::vector<int> bl, cl;
  for (int q = 0; q < m; ++q) {
    if (scale[q] == 0.0 || role[q] == Role::kFixed) continue;
    (role[q] == Role::kLinear ? cl : bl).push_back(q);
  }
  const int kb = static_cast<int>(bl.size()), kc = static_cast<int>(cl.size());
  auto hs = [&](int r, int c) { return scale[r] * H[r + static_cast<std::size_t>(c) * m] * scale[c]; };
  out->index = bl;
  out->A.assign(static_cast<std::size_t>(kb) * kb, 0.0);
  out->gr.assign(kb, 0.0);
  for (int c = 0; c < kb; ++c) {
    for (int r = 0; r < kb; ++r) out->A[r + static_cast<std::size_t>(c) * kb] = hs(bl[r], bl[c]);
    out->gr[c] = scale[bl[c]] * g[bl[c]];
  }
  if (kc > 0) {
    // Eigenvectors of the scaled H_cc, then Y = V^T [H_cb | g_c] row-scaled by the kept
    // inverse eigenvalues; the Schur complement is H_bb - (V^T H_cb)^T Y.
    std::vector<double> C(static_cast<std::size_t>(kc) * kc), w(kc);
    for (int c = 0; c < kc; ++c)
      for (int r = 0; r < kc; ++r) C[r + static_cast<std::size_t>(c) * kc] = hs(cl[r], cl[c]);
    int lwork = -1, liwork = -1, info = 0, iq = 0;
    double wq = 0.0;
    dsyevd_("V", "L", &kc, C.data(), &kc, w.data(), &wq, &lwork, &iq, &liwork, &info);
    lwork = static_cast<int>(wq);
    liwork = iq;
    std::vector<double> work(std::max(1, lwork));
    std::vector<int> iwork(std::max(1, liwork));
    dsyevd_("V", "L", &kc, C.data(), &kc, w.data(), work.data(), &lwork, iwork.data(), &liwork,
            &info);
    if (info < 0) throw std::logic_error("dsyevd: illegal argument " + std::to_string(-info));
    if (info > 0) {  // no eigendecomposition: no elimination (the step then is on b alone)
      return;
    }
    const int nr = kb + 1;
    std::vector<double> M(static_cast<std::size_t>(kc) * nr);  // [H_cb | g_c], scaled
    for (int c = 0; c < kb; ++c)
      for (int r = 0; r < kc; ++r) M[r + static_cast<std::size_t>(c) * kc] = hs(cl[r], bl[c]);
    for (int r = 0; r < kc; ++r) M[r + static_cast<std::size_t>(kb) * kc] = scale[cl[r]] * g[cl[r]];
    std::vector<double> Z(static_cast<std::size_t>(kc) * nr);  // V^T M
    const double one = 1.0, zero = 0.0;
    dgemm_("T", "N", &kc, &nr, &kc, &one, C.data(), &kc, M.data(), &kc, &zero, Z.data(), &kc);
    const double wmax = kc > 0 ? w[kc - 1] : 0.0;
    std::vector<double> Y(Z);
    for (int r = 0; r < kc; ++r) {
      const double inv = w[r] > kPinvRel * wmax && w[r] > 0.0 ? 1.0 / w[r] : 0.0;
      for (int c = 0; c < nr; ++c) Y[r + static_cast<std::size_t>(c) * kc] *= inv;
    }
    // [A | gr] -= Z_b^T Y  (Z_b: the first kb columns of Z)
    std::vector<double> S(static_cast<std::size_t>(kb) * nr);
    dgemm_("T", "N", &kb, &nr, &kc, &one, Z.data(), &kc, Y.data(), &kc, &zero, S.data(), &kb);
    for (int c = 0; c < kb; ++c)
      for (int r = 0; r < kb; ++r) out->A[r + static_cast<std::size_t>(c) * kb] -= S[r + static_cast<std::size_t>(c) * kb];
    for (int r = 0; r < kb; ++r) out->gr[r] -= S[r + static_cast<std::size_t>(kb) * kb];
  }
  if (!extra.empty()) {
    std::vector<int> pos(m, -1);
    for (int k = 0; k < kb; ++k) pos[bl[k]] = k;
    for (const HessEntry& e : extra) {
      const int r = pos[e.row], c = pos[e.col];
      if (r >= 0 && c >= 0) out->A[r + static_cast<std::size_t>(c) * kb] += scale[e.row] * e.value * scale[e.col];
    }
  }
  for (int c = 0; c < kb; ++c)
    for (int r = c + 1; r < kb; ++r) {
      double& lo = out->A[r + static_cast<std::size_t>(c) * kb];
      double& up = out->A[c + static_cast<std::size_t>(r) * kb];
      lo = up = 0.5 * (lo + up);
    }
}

int reduced_solve(int m, const double* scale, const ReducedSystem& sys, double lambda,
                  std::vector<double>& work, double* step, double* pred) {
  const int kb = static_cast<int>(sys.index.size());
  std::fill(step, step + m, 0.0);
  *pred = 0.0;
  if (kb == 0) return 0;
  std::vector<double> t(kb), z(kb);
  double dmax = 0.0;
  for (int k = 0; k < kb; ++k) dmax = std::fmax(dmax, std::fabs(sys.A[k + static_cast<std::size_t>(k) * kb]));
  // Scaled to unit diagonal by |A_kk|: a direction of negative curvature keeps its sign, and
  // the damping then grows until the system is positive definite.
  for (int k = 0; k < kb; ++k) {
    const double d = std::fabs(sys.A[k + static_cast<std::size_t>(k) * kb]);
    t[k] = d > kPinvRel * dmax && d > 0.0 ? 1.0 / std::sqrt(d) : 0.0;
  }
  work.resize(static_cast<std::size_t>(kb) * kb);
  for (int c = 0; c < kb; ++c) {
    for (int r = c; r < kb; ++r) {
      double a = t[r] * sys.A[r + static_cast<std::size_t>(c) * kb] * t[c];
      if (r == c) a = t[c] == 0.0 ? 1.0 : a + lambda;
      work[r + static_cast<std::size_t>(c) * kb] = a;
    }
    z[c] = -t[c] * sys.gr[c];
  }
  const std::vector<double> rhs(z);
  int info = 0;
  dpotrf_("L", &kb, work.data(), &kb, &info);
  if (info < 0) throw std::logic_error("dpotrf: illegal argument " + std::to_string(-info));
  if (info > 0) return info;
  const int one = 1;
  dpotrs_("L", &kb, &one, work.data(), &kb, z.data(), &kb, &info);
  if (info < 0) throw std::logic_error("dpotrs: illegal argument " + std::to_string(-info));
  double p = 0.0;
  for (int k = 0; k < kb; ++k) {
    p += rhs[k] * z[k] + lambda * z[k] * z[k];
    step[sys.index[k]] = scale[sys.index[k]] * t[k] * z[k];
  }
  *pred = 0.5 * p;
  return 0;
}

}  // namespace gs
