// Architectures as data. Every architecture gpu-sweep knows is one row of kArchTable; the
// rest of the code reads its factors, stages, names, parameter layout, P and effective P
// from here. Host and device.
//
// Family kGated, order K: a neuron is D_i s(a_i0) prod_{b=1}^{K} a_ib with K + 1 factors
// a_ib = W_b[i] . x + w_b[i]; factor 0 is the gate. gated:0 is the mlp, gated:1 the glu,
// gated:2 the gqu. In 1D with relu, a neuron with its factors' roots at its kink is the
// truncated power D (x - t)_+^(K+1), so the network holds the C^K splines of degree K + 1.
//
// Family kGpoly, order K: a neuron is s(a_i0) p_i(x), the gate times a free polynomial of
// total degree K in the d inputs, p_i(x) = sum_alpha D_i,alpha x^alpha (its output weights:
// D_i is the vector of p_i's coefficients). One factor, the gate; C(d + K, K) coefficients.
// In 1D gpoly:1 holds the glu's functions with 4 parameters per neuron instead of 5, and
// gpoly:2 the gqu's without the constraint that the quadratic's roots be real.
//
// Adding an architecture of a known family is one row of kArchTable (and its tests).
#pragma once

#include <string>

#include "gpusweep/model/hd.h"

namespace gs {

enum class Family : int { kGated = 0, kGpoly = 1 };

// An architecture's value encodes its row: 16 * family + order. The three the paper names
// keep their own enumerators.
enum class Arch : int { kMlp = 0, kGlu = 1, kGqu = 2 };

constexpr int kOrderRadix = 16;

struct ArchRow {
  Family family;
  int order;          // K: the linear factors after the gate
  const char* alias;  // the name results and figures use; "" for none (then family:K)
};

constexpr ArchRow kArchTable[] = {
    {Family::kGated, 0, "mlp"},
    {Family::kGated, 1, "glu"},
    {Family::kGated, 2, "gqu"},
    {Family::kGated, 3, ""},
    {Family::kGated, 4, ""},
    {Family::kGpoly, 0, ""},
    {Family::kGpoly, 1, ""},
    {Family::kGpoly, 2, ""},
    {Family::kGpoly, 3, ""},
    {Family::kGpoly, 4, ""},
};
constexpr int kNumArchs = static_cast<int>(sizeof(kArchTable) / sizeof(kArchTable[0]));

constexpr const char* family_name(Family f) {
  return f == Family::kGated ? "gated" : f == Family::kGpoly ? "gpoly" : "?";
}

HD constexpr Arch make_arch(Family f, int order) {
  return static_cast<Arch>(static_cast<int>(f) * kOrderRadix + order);
}
HD constexpr Family arch_family(Arch a) { return static_cast<Family>(static_cast<int>(a) / kOrderRadix); }
HD constexpr int arch_order(Arch a) { return static_cast<int>(a) % kOrderRadix; }
constexpr Arch row_arch(const ArchRow& r) { return make_arch(r.family, r.order); }

// Factors of one neuron: the gate and, for gated:K, the K linear factors.
HD constexpr int num_factors(Arch a) { return arch_family(a) == Family::kGated ? arch_order(a) + 1 : 1; }

// Degree of a neuron's output polynomial p_i (0 for gated:K, whose D_i is one number).
HD constexpr int poly_degree(Arch a) { return arch_family(a) == Family::kGpoly ? arch_order(a) : 0; }

// Degree in x of a neuron's value on a 1D relu's active half-line: the gate, the linear
// factors and the output polynomial multiplied out.
HD constexpr int column_degree(Arch a) { return num_factors(a) + poly_degree(a); }

// The largest f(arch) over the rows (at least 1).
constexpr int max_over_rows(int (*f)(Arch)) {
  int m = 1;
  for (const ArchRow& r : kArchTable)
    if (f(row_arch(r)) > m) m = f(row_arch(r));
  return m;
}
// The highest order of a family's rows (-1 for none).
constexpr int max_order(Family f) {
  int m = -1;
  for (const ArchRow& r : kArchTable)
    if (r.family == f && r.order > m) m = r.order;
  return m;
}
// The most factors of any row: the size of the per-neuron arrays of network.h and relu1d.h.
constexpr int kMaxFactors = max_over_rows(num_factors);
// The highest column degree of any row: the size of relu1d.h's column polynomials.
constexpr int kMaxColumnDegree = max_over_rows(column_degree);

// The most coefficients one neuron's output polynomial may have, C(d + K, K) for degree K in
// d inputs (gpoly:4 in 3 inputs, or gpoly:3 in 4, has 35): the size of the per-neuron arrays
// that hold its monomials. The sweep refuses a (d, K) beyond it.
constexpr int kMaxPolyTerms = 35;

// C(d + K, K): the monomials of total degree <= K in d variables.
HD constexpr long long poly_term_count(int d, int K) {
  long long c = 1;
  for (int j = 1; j <= K; ++j) c = c * (d + j) / j;
  return c;
}

// Stage names of the factors: G (the gate), then U, Q, R, S, T, V, W.
constexpr const char* kFactorNames[] = {"G", "U", "Q", "R", "S", "T", "V", "W"};
static_assert(kMaxFactors <= static_cast<int>(sizeof(kFactorNames) / sizeof(kFactorNames[0])),
              "name the new factors in kFactorNames");

// The row of an architecture, or nullptr for a value no row has.
constexpr const ArchRow* arch_row(Arch a) {
  for (const ArchRow& r : kArchTable)
    if (row_arch(r) == a) return &r;
  return nullptr;
}

// Host: the name results use (the alias, or "gated:K"), and the parser of --arch names,
// which takes both the alias and family:order. parse_arch is false for a name no row has.
const char* arch_name(Arch a);
std::string arch_family_name(Arch a);  // always family:order, e.g. "gated:2"
bool parse_arch(const std::string& name, Arch* out);

}  // namespace gs
