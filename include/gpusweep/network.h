// The math of one network: parameter layout, forward pass, Jacobian row and per-neuron second
// derivatives, for every architecture of arch.h with input x in R^d and a scalar output.
// Host and device.
//
// y(x) = d0 + sum_i D_i s(a_i0) prod_{b=1}^{nf-1} a_ib,  a_ib = W_b[i] . x + w_b[i]
// with nf = K + 1 factors: the gate G, then U, Q, R, S (gated:K; mlp nf = 1, glu 2, gqu 3).
//
// Layout of one network's parameter vector (block order G, g | U, u | Q, q | ... | D, d0):
//   factor b occupies [b n (d+1), (b+1) n (d+1)): first its n x d weights (row i = neuron i),
//   then its n biases; then D (n entries) and d0. So every stage is a contiguous range.
#pragma once

#include "gpusweep/activation.h"
#include "gpusweep/arch.h"
#include "gpusweep/hd.h"

namespace gs {

struct Shape {
  Arch arch;
  Act act;
  int d;  // input dimension
  int n;  // width (neurons)
};

HD inline int factor_offset(const Shape& s, int b) { return b * s.n * (s.d + 1); }
HD inline int d_offset(const Shape& s) { return num_factors(s.arch) * s.n * (s.d + 1); }
HD inline int num_params(const Shape& s) { return d_offset(s) + s.n + 1; }

// P less the directions along which the function does not change (continuous symmetries):
// each neuron gives one per linear factor (its scale trades against D) and, for relu, one
// more (relu(c a) = c relu(a) for c > 0: the gate's scale trades against D too).
// In 1D with relu: mlp 2n + 1, glu 3n + 1, gqu 4n + 1, gated:K (K + 2) n + 1.
HD inline int effective_params(const Shape& s) {
  const int lost = (num_factors(s.arch) - 1) + (s.act == Act::kRelu ? 1 : 0);
  return num_params(s) - s.n * lost;
}

// Parameters of neuron i in local order [W_0[i] (d), w_0[i], ..., W_{nf-1}[i], w_{nf-1}[i], D_i].
HD inline int neuron_num_params(const Shape& s) { return num_factors(s.arch) * (s.d + 1) + 1; }
HD inline int neuron_param_index(const Shape& s, int i, int k) {
  const int per = s.d + 1;
  const int b = k / per;
  if (b == num_factors(s.arch)) return d_offset(s) + i;
  const int j = k - b * per;
  return factor_offset(s, b) + (j < s.d ? i * s.d + j : s.n * s.d + i);
}

// Everything about neuron i at one point that the derivatives need.
struct NeuronEval {
  double a[kMaxFactors];      // pre-activations a_ib
  ActEval g;                  // s, s', s'' at a_i0
  double m;                   // prod_{b>=1} a_ib (1 for mlp)
  double other[kMaxFactors];  // for b >= 1: prod_{c>=1, c!=b} a_ic
  double D;
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
  e.D = theta[d_offset(s) + i];
  return e;
}

HD inline double evaluate(const Shape& s, const double* theta, const double* x) {
  double y = theta[num_params(s) - 1];
  for (int i = 0; i < s.n; ++i) {
    const NeuronEval e = eval_neuron(s, theta, x, i);
    y += e.D * e.g.s * e.m;
  }
  return y;
}

// dy/da_ib for neuron i (b = 0 is the gate).
HD inline double dy_dfactor(const NeuronEval& e, int b) {
  return b == 0 ? e.D * e.g.ds * e.m : e.D * e.g.s * e.other[b];
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
  row[d_offset(s) + i] = hm;
  return e.D * hm;
}

// Inverse of neuron_param_index: the neuron i and local index k of global parameter q.
// Returns false for d0, the one parameter that belongs to no neuron.
HD inline bool param_owner(const Shape& s, int q, int* i, int* k) {
  const int per = s.d + 1;
  const int doff = d_offset(s);
  if (q >= doff) {
    if (q == num_params(s) - 1) return false;
    *i = q - doff;
    *k = num_factors(s.arch) * per;
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
HD inline double jacobian_entry(const Shape& s, const NeuronEval& e, const double* x, int k) {
  const int per = s.d + 1;
  const int b = k / per;
  if (b == num_factors(s.arch)) return e.g.s * e.m;
  const int j = k - b * per;
  const double da = dy_dfactor(e, b);
  return j < s.d ? da * x[j] : da;
}

// Writes the full Jacobian row dy/dtheta (num_params entries) at x and returns y(x).
HD inline double jacobian_row(const Shape& s, const double* theta, const double* x, double* row) {
  double y = theta[num_params(s) - 1];
  for (int i = 0; i < s.n; ++i) y += neuron_jacobian(s, eval_neuron(s, theta, x, i), x, i, row);
  row[d_offset(s) + s.n] = 1.0;
  return y;
}

// Curvature of y in neuron i's factor values: hab[b][c] = d2y / da_b da_c and
// hbD[b] = d2y / da_b dD (b, c < nf); d2y/dD2 = 0. With x~ = (x, 1), the second derivative
// of y in the parameters of factors b and c is hab[b][c] x~ x~^T, and in (factor b, D) it is
// hbD[b] x~.
HD inline void neuron_curvature(const Shape& s, const NeuronEval& e,
                                double hab[kMaxFactors][kMaxFactors], double hbD[kMaxFactors]) {
  const int nf = num_factors(s.arch);
  for (int b = 0; b < nf; ++b) {
    for (int c = 0; c < nf; ++c) {
      double v;
      if (b == 0 && c == 0) {
        v = e.D * e.g.d2s * e.m;
      } else if (b == 0 || c == 0) {
        v = e.D * e.g.ds * e.other[b == 0 ? c : b];
      } else if (b == c) {
        v = 0.0;
      } else {
        double p = 1.0;  // prod over factors other than 0, b, c
        for (int f = 1; f < nf; ++f)
          if (f != b && f != c) p *= e.a[f];
        v = e.D * e.g.s * p;
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
  const int k = nf * per + 1;
  double hab[kMaxFactors][kMaxFactors];
  double hbD[kMaxFactors];
  neuron_curvature(s, e, hab, hbD);
  for (int p = 0; p < k; ++p) {
    const int bp = p / per;
    const int jp = p - bp * per;
    const double xp = bp < nf ? (jp < s.d ? x[jp] : 1.0) : 1.0;
    for (int q = 0; q < k; ++q) {
      const int bq = q / per;
      const int jq = q - bq * per;
      const double xq = bq < nf ? (jq < s.d ? x[jq] : 1.0) : 1.0;
      double v;
      if (bp == nf && bq == nf) {
        v = 0.0;
      } else if (bp == nf) {
        v = hbD[bq] * xq;
      } else if (bq == nf) {
        v = hbD[bp] * xp;
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
