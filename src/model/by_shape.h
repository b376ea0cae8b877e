// Compile-time network shapes for the host's per-point loops: the gated architectures on 1D
// inputs get their factor count and input dimension as constants, so the network math unrolls.
#pragma once

#include <type_traits>
#include <utility>

#include "gpusweep/model/arch.h"

namespace gs {

// The shape with the factor count kNf and the input dimension kD fixed at compile time where
// they are nonzero (see by_shape).
template <int kNf, int kD>
Shape fixed_shape(const Shape& shape) {
  return Shape{kNf > 0 ? make_arch(Family::kGated, kNf - 1) : shape.arch, shape.act, kD > 0 ? kD : shape.d,
               shape.n};
}

// Calls f(kNf, kD) with the factor count and the input dimension as compile-time constants
// (std::integral_constant) for the gated architectures on 1D inputs, and with both 0 (read
// at run time) otherwise.
template <int kNf = 1, class F>
double by_shape(const Shape& s, F&& f) {
  if constexpr (kNf > kMaxFactors) {
    return f(std::integral_constant<int, 0>{}, std::integral_constant<int, 0>{});
  } else {
    if (s.d == 1 && arch_family(s.arch) == Family::kGated && num_factors(s.arch) == kNf)
      return f(std::integral_constant<int, kNf>{}, std::integral_constant<int, 1>{});
    return by_shape<kNf + 1>(s, std::forward<F>(f));
  }
}

}  // namespace gs
