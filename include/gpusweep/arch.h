// Architectures as data. Every architecture gpu-sweep knows is one row of kArchTable; the
// rest of the code reads its factors, stages, names, parameter layout, P and effective P
// from here. Host and device.
//
// Family kGated, order K: a neuron is D_i s(a_i0) prod_{b=1}^{K} a_ib with K + 1 factors
// a_ib = W_b[i] . x + w_b[i]; factor 0 is the gate. gated:0 is the mlp, gated:1 the glu,
// gated:2 the gqu. In 1D with relu, a neuron with its factors' roots at its kink is the
// truncated power D (x - t)_+^(K+1), so the network holds the C^K splines of degree K + 1.
//
// Adding an architecture of a known family is one row of kArchTable (and its tests).
#pragma once

#include <string>

#include "gpusweep/hd.h"

namespace gs {

enum class Family : int { kGated = 0 };

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
};
constexpr int kNumArchs = static_cast<int>(sizeof(kArchTable) / sizeof(kArchTable[0]));

constexpr const char* family_name(Family f) { return f == Family::kGated ? "gated" : "?"; }

HD constexpr Arch make_arch(Family f, int order) {
  return static_cast<Arch>(static_cast<int>(f) * kOrderRadix + order);
}
HD constexpr Family arch_family(Arch a) { return static_cast<Family>(static_cast<int>(a) / kOrderRadix); }
HD constexpr int arch_order(Arch a) { return static_cast<int>(a) % kOrderRadix; }
constexpr Arch row_arch(const ArchRow& r) { return make_arch(r.family, r.order); }

// Factors of one neuron: the gate and the K linear factors.
HD constexpr int num_factors(Arch a) { return arch_order(a) + 1; }

constexpr int max_factors() {
  int m = 1;
  for (const ArchRow& r : kArchTable)
    if (num_factors(row_arch(r)) > m) m = num_factors(row_arch(r));
  return m;
}
// The most factors of any row: the size of the per-neuron arrays of network.h and relu1d.h.
constexpr int kMaxFactors = max_factors();

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
