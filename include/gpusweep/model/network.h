// The math of one network: parameter layout, forward pass, Jacobian row and per-neuron second
// derivatives, for every architecture of arch.h with input x in R^d and a scalar output.
// Host and device.
//
// y(x) = d0 + sum_i s(a_i0) prod_{b=1}^{nf-1} a_ib q_i(x),  a_ib = W_b[i] . x + w_b[i],
//        q_i(x) = sum_alpha D_i,alpha x^alpha
// with nf factors: the gate G, then U, Q, R, S, and q_i the neuron's output polynomial of
// degree Kp. gated:K has nf = K + 1 and Kp = 0 (q_i = D_i: mlp nf = 1, glu 2, gqu 3);
// gpoly:K has nf = 1 and Kp = K. The monomials x^alpha of total degree <= Kp come in graded
// order (1; x_1..x_d; x_1^2, x_1 x_2, ..: see poly_terms), M = C(d + Kp, Kp) of them.
//
// Layout of one network's parameter vector (block order G, g | U, u | Q, q | ... | D, d0):
//   factor b occupies [b n (d+1), (b+1) n (d+1)): first its n x d weights (row i = neuron i),
//   then its n biases; then D (n x M, row i = neuron i's coefficients) and d0. So every stage
//   is a contiguous range.
#pragma once

#include "gpusweep/model/activation.h"
#include "gpusweep/model/arch.h"
#include "gpusweep/model/hd.h"

namespace gs {

struct Shape {
  Arch arch;
  Act act;
  int d;  // input dimension
  int n;  // width (neurons)
};

// M: the coefficients of one neuron's output polynomial (1 for gated:K).
HD inline int num_poly_terms(const Shape& s) {
  return static_cast<int>(poly_term_count(s.d, poly_degree(s.arch)));
}

HD inline int factor_offset(const Shape& s, int b) { return b * s.n * (s.d + 1); }
HD inline int d_offset(const Shape& s) { return num_factors(s.arch) * s.n * (s.d + 1); }
HD inline int num_params(const Shape& s) { return d_offset(s) + s.n * num_poly_terms(s) + 1; }

// The monomials of total degree <= poly_degree at x, in graded order, into out (M entries,
// M <= kMaxPolyTerms). The monomials of degree t come in groups by their lowest variable j:
// x_j times each monomial of degree t - 1 whose lowest variable is j or later (the tail of
// the previous degree from its group j), so every monomial comes once.
HD inline int poly_terms(const Shape& s, const double* x, double* out) {
  out[0] = 1.0;
  const int K = poly_degree(s.arch);
  if (K == 0) return 1;
  if (s.d == 1) {
    for (int t = 1; t <= K; ++t) out[t] = out[t - 1] * x[0];
    return K + 1;
  }
  int first[kMaxPolyTerms];  // d < M <= kMaxPolyTerms
  for (int j = 0; j < s.d; ++j) first[j] = 0;
  int m = 1;
  for (int t = 1; t <= K; ++t) {
    const int end = m;
    for (int j = 0; j < s.d; ++j) {
      const double xj = x[j];
      const int from = first[j];
      first[j] = m;
      for (int q = from; q < end; ++q) out[m++] = out[q] * xj;
    }
  }
  return m;
}

// One monomial x^alpha (alpha in poly_terms' order).
HD inline double poly_term(const Shape& s, const double* x, int alpha) {
  if (alpha == 0) return 1.0;
  if (s.d == 1) {
    double v = 1.0;
    for (int t = 0; t < alpha; ++t) v *= x[0];
    return v;
  }
  double t[kMaxPolyTerms];
  poly_terms(s, x, t);
  return t[alpha];
}

// P less the directions along which the function does not change (continuous symmetries):
// each neuron gives one per linear factor (its scale trades against D) and, for relu, one
// more (relu(c a) = c relu(a) for c > 0: the gate's scale trades against D too).
// In 1D with relu: mlp 2n + 1, glu 3n + 1, gqu 4n + 1, gated:K (K + 2) n + 1; gpoly:K has
// only the gate's (K + 2) n + 1 with relu, (K + 3) n + 1 with a smooth activation.
HD inline int effective_params(const Shape& s) {
  const int lost = (num_factors(s.arch) - 1) + (s.act == Act::kRelu ? 1 : 0);
  return num_params(s) - s.n * lost;
}

// Parameters of neuron i in local order
// [W_0[i] (d), w_0[i], ..., W_{nf-1}[i], w_{nf-1}[i], D_i,0 .. D_i,M-1].
HD inline int neuron_num_params(const Shape& s) { return num_factors(s.arch) * (s.d + 1) + num_poly_terms(s); }
HD inline int neuron_param_index(const Shape& s, int i, int k) {
  const int per = s.d + 1;
  const int nf = num_factors(s.arch);
  const int b = k / per;
  if (b >= nf) return d_offset(s) + i * num_poly_terms(s) + (k - nf * per);
  const int j = k - b * per;
  return factor_offset(s, b) + (j < s.d ? i * s.d + j : s.n * s.d + i);
}

// Everything about neuron i at one point that the derivatives need.
struct NeuronEval {
  double a[kMaxFactors];      // pre-activations a_ib
  ActEval g;                  // s, s', s'' at a_i0
  double m;                   // prod_{b>=1} a_ib (1 for mlp)
  double other[kMaxFactors];  // for b >= 1: prod_{c>=1, c!=b} a_ic
  double q;                   // the output polynomial q_i(x) (D_i for gated:K)
};

HD inline NeuronEval eval_neuron(const Shape& s, const double* theta, const double* x, int i) {
  NeuronEval e;
  const int nf = num_factors(s.arch);
  for (int b = 0; b < nf; ++b) {
    const double* W = theta + factor_offset(s, b) + i * s.d;
    double a = theta[factor_offset(s, b) + s.n * s.d + i];
    for (int j = 0; j < s.d; ++j) a += W[j] * x[j];
    e.a[b] = a;
  }
  e.g = activate(s.act, e.a[0]);
  e.m = 1.0;
  e.other[0] = 1.0;
  for (int b = 1; b < nf; ++b) e.m *= e.a[b];
  for (int b = 1; b < nf; ++b) {
    double p = 1.0;
    for (int c = 1; c < nf; ++c)
      if (c != b) p *= e.a[c];
    e.other[b] = p;
  }
  const int M = num_poly_terms(s);
  const double* D = theta + d_offset(s) + i * M;
  if (M == 1) {
    e.q = D[0];
  } else if (s.d == 1) {
    double q = D[M - 1];
    for (int t = M - 2; t >= 0; --t) q = q * x[0] + D[t];
    e.q = q;
  } else {
    double t[kMaxPolyTerms];
    poly_terms(s, x, t);
    double q = 0.0;
    for (int a = 0; a < M; ++a) q += D[a] * t[a];
    e.q = q;
  }
  return e;
}

HD inline double evaluate(const Shape& s, const double* theta, const double* x) {
  double y = theta[num_params(s) - 1];
  for (int i = 0; i < s.n; ++i) {
    const NeuronEval e = eval_neuron(s, theta, x, i);
    y += e.q * e.g.s * e.m;
  }
  return y;
}

// dy/da_ib for neuron i (b = 0 is the gate).
HD inline double dy_dfactor(const NeuronEval& e, int b) {
  return b == 0 ? e.q * e.g.ds * e.m : e.q * e.g.s * e.other[b];
}

// Writes neuron i's entries of the Jacobian row dy/dtheta at x and returns its term of y.
HD inline double neuron_jacobian(const Shape& s, const NeuronEval& e, const double* x, int i,
                                 double* row) {
  const int nf = num_factors(s.arch);
  for (int b = 0; b < nf; ++b) {
    const double da = dy_dfactor(e, b);
    double* W = row + factor_offset(s, b) + i * s.d;
    for (int j = 0; j < s.d; ++j) W[j] = da * x[j];
    row[factor_offset(s, b) + s.n * s.d + i] = da;
  }
  const double hm = e.g.s * e.m;
  const int M = num_poly_terms(s);
  double* Drow = row + d_offset(s) + i * M;
  if (M == 1) {
    Drow[0] = hm;
  } else {
    double t[kMaxPolyTerms];
    poly_terms(s, x, t);
    for (int a = 0; a < M; ++a) Drow[a] = hm * t[a];
  }
  return e.q * hm;
}

// Inverse of neuron_param_index: the neuron i and local index k of global parameter q.
// Returns false for d0, the one parameter that belongs to no neuron.
HD inline bool param_owner(const Shape& s, int q, int* i, int* k) {
  const int per = s.d + 1;
  const int doff = d_offset(s);
  if (q >= doff) {
    if (q == num_params(s) - 1) return false;
    const int M = num_poly_terms(s);
    *i = (q - doff) / M;
    *k = num_factors(s.arch) * per + (q - doff) % M;
    return true;
  }
  const int b = q / (s.n * per);
  const int r = q - b * s.n * per;
  if (r < s.n * s.d) {
    *i = r / s.d;
    *k = b * per + r % s.d;
  } else {
    *i = r - s.n * s.d;
    *k = b * per + s.d;
  }
  return true;
}

// One entry dy/dtheta_q of the Jacobian row at x, where q is neuron e's local parameter k.
// mono, when given, holds the monomials of poly_terms(s, x): a polynomial coefficient's entry
// then reads its x^alpha there instead of computing it.
HD inline double jacobian_entry(const Shape& s, const NeuronEval& e, const double* x, int k,
                                const double* mono = nullptr) {
  const int per = s.d + 1;
  const int nf = num_factors(s.arch);
  const int b = k / per;
  if (b >= nf) return e.g.s * e.m * (mono != nullptr ? mono[k - nf * per] : poly_term(s, x, k - nf * per));
  const int j = k - b * per;
  const double da = dy_dfactor(e, b);
  return j < s.d ? da * x[j] : da;
}

// Writes the full Jacobian row dy/dtheta (num_params entries) at x and returns y(x).
HD inline double jacobian_row(const Shape& s, const double* theta, const double* x, double* row) {
  double y = theta[num_params(s) - 1];
  for (int i = 0; i < s.n; ++i) y += neuron_jacobian(s, eval_neuron(s, theta, x, i), x, i, row);
  row[num_params(s) - 1] = 1.0;
  return y;
}

// Curvature of y in neuron i's factor values: hab[b][c] = d2y / da_b da_c and
// hbD[b] = d2y / da_b dq (b, c < nf); d2y/dq2 = 0. With x~ = (x, 1), the second derivative
// of y in the parameters of factors b and c is hab[b][c] x~ x~^T, and in (factor b, D_alpha)
// it is hbD[b] x^alpha x~.
HD inline void neuron_curvature(const Shape& s, const NeuronEval& e,
                                double hab[kMaxFactors][kMaxFactors], double hbD[kMaxFactors]) {
  const int nf = num_factors(s.arch);
  for (int b = 0; b < nf; ++b) {
    for (int c = 0; c < nf; ++c) {
      double v;
      if (b == 0 && c == 0) {
        v = e.q * e.g.d2s * e.m;
      } else if (b == 0 || c == 0) {
        v = e.q * e.g.ds * e.other[b == 0 ? c : b];
      } else if (b == c) {
        v = 0.0;
      } else {
        double p = 1.0;  // prod over factors other than 0, b, c
        for (int f = 1; f < nf; ++f)
          if (f != b && f != c) p *= e.a[f];
        v = e.q * e.g.s * p;
      }
      hab[b][c] = v;
    }
    hbD[b] = b == 0 ? e.g.ds * e.m : e.g.s * e.other[b];
  }
}

// Second derivatives of y with respect to neuron i's own parameters, in the local order of
// neuron_param_index: blk is k x k, row-major, symmetric, k = neuron_num_params(s).
// Parameters of different neurons never interact, and d0 enters linearly, so these blocks
// are the whole of d2y/dtheta2.
HD inline void neuron_hessian(const Shape& s, const NeuronEval& e, const double* x, double* blk) {
  const int nf = num_factors(s.arch);
  const int per = s.d + 1;
  const int k = neuron_num_params(s);
  double hab[kMaxFactors][kMaxFactors];
  double hbD[kMaxFactors];
  neuron_curvature(s, e, hab, hbD);
  double t[kMaxPolyTerms];
  poly_terms(s, x, t);
  // x~ of a factor parameter, x^alpha of a coefficient D_alpha.
  auto xval = [&](int b, int j) { return b < nf ? (j < s.d ? x[j] : 1.0) : t[j]; };
  for (int p = 0; p < k; ++p) {
    const int bp = p < nf * per ? p / per : nf;
    const int jp = p - bp * per;
    const double xp = xval(bp, jp);
    for (int q = 0; q < k; ++q) {
      const int bq = q < nf * per ? q / per : nf;
      const int jq = q - bq * per;
      const double xq = xval(bq, jq);
      double v;
      if (bp == nf && bq == nf) {
        v = 0.0;
      } else if (bp == nf) {
        v = hbD[bq] * xq * xp;
      } else if (bq == nf) {
        v = hbD[bp] * xp * xq;
      } else {
        v = hab[bp][bq] * xp * xq;
      }
      blk[p * k + q] = v;
    }
  }
}

// A stage is a set of parameter blocks trained together; each is a contiguous range. Factor
// b's block is Block(b) (kG, kU, kQ, then the factors past Q); D and ALL come after them.
enum class Block : int { kG = 0, kU = 1, kQ = 2, kD = kMaxFactors, kAll = kMaxFactors + 1 };

HD constexpr Block factor_block(int b) { return static_cast<Block>(b); }
HD constexpr bool is_factor_block(Block b) { return static_cast<int>(b) < kMaxFactors; }

HD inline bool has_block(Arch a, Block b) {
  return b == Block::kD || b == Block::kAll || static_cast<int>(b) < num_factors(a);
}

// [begin, end) of the stage's parameters; requires has_block(s.arch, b).
HD inline void stage_range(const Shape& s, Block b, int* begin, int* end) {
  if (b == Block::kAll) {
    *begin = 0;
    *end = num_params(s);
  } else if (b == Block::kD) {
    *begin = d_offset(s);
    *end = num_params(s);
  } else {
    *begin = factor_offset(s, static_cast<int>(b));
    *end = factor_offset(s, static_cast<int>(b) + 1);
  }
}

// With the other blocks fixed, y is linear in D and d0 and in every non-gate factor, so one
// undamped Newton step of such a stage is the exact least-squares solution.
HD inline bool stage_is_linear(Arch a, Block b) {
  return b == Block::kD || (b != Block::kAll && b != Block::kG && has_block(a, b));
}

}  // namespace gs
