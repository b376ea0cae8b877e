// Fast assembly for relu networks on 1D inputs (../shared/DESIGN.md section 4). On its active
// half-line {x : G_i x + g_i > 0} every Jacobian column of neuron i is a polynomial in x of
// degree <= c = column_degree (nf + the output polynomial's degree; relu' = 1 there,
// relu'' = 0), and so is every second derivative within the neuron. With the training points
// sorted, an entry of J^T J is a sum over an interval of points of a polynomial of degree
// <= 2 c: a combination of the moments sum x^j, j <= 2 kMaxColumnDegree, read from prefix
// sums. The prefix sums are kept in double-double so
// that the difference over a short interval keeps its digits. An entry then costs O(c^2),
// not O(N).
// Host and device.
#pragma once

#include "gpusweep/model/network.h"

namespace gs {

constexpr int kColCoef = kMaxColumnDegree + 1;         // coefficients of a column polynomial
constexpr int kNumMoments = 2 * kMaxColumnDegree + 1;  // moments x^0 .. x^(2 c) of a J^T J entry

HD inline bool relu1d_fast_path(const Shape& s) { return s.d == 1 && s.act == Act::kRelu; }

// p (coefficients c[0..deg]) times (c0 + c1 x), in place; p has room for deg + 2 entries.
HD inline void poly_mul_linear(double* p, int deg, double c0, double c1) {
  p[deg + 1] = 0.0;
  for (int j = deg + 1; j >= 1; --j) p[j] = p[j] * c0 + p[j - 1] * c1;
  p[0] *= c0;
}

// Neuron i's factors as linear functions a_b(x) = w[b] + W[b] x, and its output polynomial
// q(x) = sum_j D[j] x^j (degree kp; D[0] alone for gated:K).
struct NeuronLines {
  double w[kMaxFactors], W[kMaxFactors];
  double D[kColCoef];
  int nf, kp;
};

HD inline NeuronLines neuron_lines(const Shape& s, const double* theta, int i) {
  NeuronLines L;
  L.nf = num_factors(s.arch);
  for (int b = 0; b < L.nf; ++b) {
    L.W[b] = theta[factor_offset(s, b) + i];
    L.w[b] = theta[factor_offset(s, b) + s.n + i];
  }
  L.kp = poly_degree(s.arch);
  for (int j = 0; j < kColCoef; ++j) L.D[j] = j <= L.kp ? theta[d_offset(s) + i * (L.kp + 1) + j] : 0.0;
  return L;
}

// c := q (with_q) or 1, times the factors b in [1, nf) except skip1 and skip2 (0 = none
// skipped), times a_0 when with_gate; padded with zeros to kColCoef. Returns the degree.
HD inline int factor_product(const NeuronLines& L, bool with_q, bool with_gate, int skip1,
                             int skip2, double c[kColCoef]) {
  for (int j = 0; j < kColCoef; ++j) c[j] = 0.0;
  int deg = 0;
  if (with_q) {
    for (int j = 0; j <= L.kp; ++j) c[j] = L.D[j];
    deg = L.kp;
  } else {
    c[0] = 1.0;
  }
  if (with_gate) poly_mul_linear(c, deg++, L.w[0], L.W[0]);
  for (int b = 1; b < L.nf; ++b)
    if (b != skip1 && b != skip2) poly_mul_linear(c, deg++, L.w[b], L.W[b]);
  return deg;
}

// Multiplies by x (the weight of a factor, against its bias).
HD inline void poly_mul_x(double c[kColCoef]) {
  for (int j = kColCoef - 1; j >= 1; --j) c[j] = c[j - 1];
  c[0] = 0.0;
}

// x^j times c.
HD inline void poly_mul_xpow(double c[kColCoef], int j) {
  for (int t = 0; t < j; ++t) poly_mul_x(c);
}

// dy/dtheta for neuron i's local parameter k (layout of neuron_param_index, d = 1: per
// factor b the weight at 2b and the bias at 2b + 1, then D_j, the coefficient of x^j, at
// 2 nf + j), on the active set.
HD inline void column_poly(const NeuronLines& L, int k, double c[kColCoef]) {
  if (k >= 2 * L.nf) {  // dy/dD_j = x^j a_0 m
    factor_product(L, false, true, 0, 0, c);
    poly_mul_xpow(c, k - 2 * L.nf);
    return;
  }
  const int b = k / 2;
  if (b == 0) factor_product(L, true, false, 0, 0, c);  // q s'(a_0) m
  else factor_product(L, true, true, b, 0, c);          // q s(a_0) prod_{c != b} a_c
  if (k % 2 == 0) poly_mul_x(c);
}

// d2y / dtheta_p dtheta_q for local parameters p, q of the same neuron, on the active set
// (neuron_curvature with s' = 1, s'' = 0). Zero polynomial where the derivative vanishes.
HD inline void curvature_poly(const NeuronLines& L, int p, int q, double c[kColCoef]) {
  for (int j = 0; j < kColCoef; ++j) c[j] = 0.0;
  const int nf = L.nf;
  const int bp = p < 2 * nf ? p / 2 : nf, bq = q < 2 * nf ? q / 2 : nf;
  if (bp == nf && bq == nf) return;
  if (bp == nf || bq == nf) {
    const int b = bp == nf ? bq : bp;
    const int kk = bp == nf ? q : p;
    const int j = (bp == nf ? p : q) - 2 * nf;  // the coefficient's power of x
    if (b == 0) factor_product(L, false, false, 0, 0, c);  // m
    else factor_product(L, false, true, b, 0, c);          // a_0 prod_{c != b} a_c
    if (kk % 2 == 0) poly_mul_x(c);
    poly_mul_xpow(c, j);
    return;
  }
  if (bp == bq) return;  // s'' = 0 for the gate; every other factor enters linearly
  if (bp == 0 || bq == 0) factor_product(L, true, false, bp == 0 ? bq : bp, 0, c);
  else factor_product(L, true, true, bp, bq, c);
  if (p % 2 == 0) poly_mul_x(c);
  if (q % 2 == 0) poly_mul_x(c);
}

// An entry of the residual curvature, w sum_k r_k d2y(x_k)/dtheta_p dtheta_q for local
// parameters p, q of one neuron, from the moments R[j] = sum r_k x_k^j over its active range
// (zero beyond the column degree).
HD inline double curvature_entry(const NeuronLines& L, int p, int q, const double R[kColCoef], double w) {
  double c[kColCoef];
  curvature_poly(L, p, q, c);
  double v = 0.0;
  for (int a = 0; a < kColCoef; ++a) v += c[a] * R[a];
  return w * v;
}

// The active points [lo, hi) of a neuron with gate G x + g among sorted points xs[0..n).
// The gate is computed as eval_neuron computes it, and it is monotone in x, so the set is
// exactly the one the per-point formulas see.
HD inline void active_range(const double* xs, int n, double G, double g, int* lo, int* hi) {
  auto on = [&](int k) {
    double a = g;
    a += G * xs[k];
    return a > 0.0;
  };
  if (G == 0.0) {
    *lo = 0;
    *hi = g > 0.0 ? n : 0;
    return;
  }
  // First k where the predicate turns (false -> true for G > 0, true -> false for G < 0).
  int a = 0, b = n;
  const bool rising = G > 0.0;
  while (a < b) {
    const int mid = a + (b - a) / 2;
    if (on(mid) == rising) b = mid;
    else a = mid + 1;
  }
  if (rising) {
    *lo = a;
    *hi = n;
  } else {
    *lo = 0;
    *hi = a;
  }
}

// The local coordinate t = (x - c0) / h of the sorted points xs[s0 .. s1) (s1 > s0), in which
// compress_relu1d (least_squares.h) factorizes a run's Vandermonde matrix: the run's centre and
// half-width, h = 1 where its points coincide.
HD inline void run_frame(const double* xs, int s0, int s1, double* c0, double* h) {
  *c0 = 0.5 * (xs[s0] + xs[s1 - 1]);
  *h = 0.5 * (xs[s1 - 1] - xs[s0]);
  if (!(*h > 0.0)) *h = 1.0;
}

// Coefficients in t of p(c0 + h t), p of degree < ncoef <= kColCoef given by its coefficients
// in x; cpow[j] = c0^j and hpow[j] = h^j, each the product of the one before and c0 (h).
HD inline void shift_poly(const double* p, int ncoef, const double* cpow, const double* hpow, double* out) {
  // out[k] = sum_{l >= k} C(l, k) p[l] c0^(l - k), summed in the order of l; binom holds row l
  // of Pascal's triangle (additions of exact integers).
  double binom[kColCoef];
  for (int k = 0; k < ncoef; ++k) out[k] = 0.0;
  for (int l = 0; l < ncoef; ++l) {
    binom[l] = 1.0;
    for (int k = l - 1; k >= 1; --k) binom[k] += binom[k - 1];
    for (int k = 0; k <= l; ++k) out[k] += binom[k] * p[l] * cpow[l - k];
  }
  for (int k = 0; k < ncoef; ++k) out[k] *= hpow[k];
}

// Error-free sum: s + e = a + b exactly.
HD inline void two_sum(double a, double b, double* s, double* e) {
  const double t = a + b;
  const double bb = t - a;
  *e = (a - (t - bb)) + (b - bb);
  *s = t;
}

// Prefix sums of w_k x_k^j (w = 1 when null) for j < nmom, k = 0..n, as double-double:
// pre[(j * (n + 1) + k) * 2] = hi, [.. + 1] = lo.
inline void build_prefix(const double* xs, const double* wts, int n, int nmom, double* pre) {
  for (int j = 0; j < nmom; ++j) {
    double hi = 0.0, lo = 0.0;
    double* out = pre + static_cast<long long>(j) * (n + 1) * 2;
    out[0] = out[1] = 0.0;
    for (int k = 0; k < n; ++k) {
      double v = wts ? wts[k] : 1.0;
      for (int q = 0; q < j; ++q) v *= xs[k];
      double s, e;
      two_sum(hi, v, &s, &e);
      lo += e;
      two_sum(s, lo, &hi, &lo);
      out[2 * (k + 1)] = hi;
      out[2 * (k + 1) + 1] = lo;
    }
  }
}

// sum over k in [lo, hi) of the moment j, from a prefix table of n points.
HD inline double prefix_moment(const double* pre, int n, int j, int lo, int hi) {
  const double* t = pre + static_cast<long long>(j) * (n + 1) * 2;
  double s, e;
  two_sum(t[2 * hi], -t[2 * lo], &s, &e);
  return s + (e + (t[2 * hi + 1] - t[2 * lo + 1]));
}

// sum_a sum_b cp[a] cq[b] M[a + b]: the J^T J entry of two column polynomials over an
// interval with moments M.
HD inline double hankel_form(const double cp[kColCoef], const double cq[kColCoef],
                             const double M[kNumMoments]) {
  double v = 0.0;
  for (int a = 0; a < kColCoef; ++a) {
    if (cp[a] == 0.0) continue;
    double t = 0.0;
    for (int b = 0; b < kColCoef; ++b) t += cq[b] * M[a + b];
    v += cp[a] * t;
  }
  return v;
}

}  // namespace gs
