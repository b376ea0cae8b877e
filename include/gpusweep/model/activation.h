// Activations s(a) with their first and second derivatives, evaluated together because
// every caller that needs s' or s'' also needs s.
#pragma once

#include <cmath>

#include "gpusweep/model/hd.h"

namespace gs {

enum class Act : int { kRelu = 0, kGelu = 1, kSilu = 2, kSigmoid = 3 };

struct ActEval {
  double s;    // s(a)
  double ds;   // s'(a)
  double d2s;  // s''(a); relu'' is taken as 0 everywhere, as autograd does
};

HD inline double stable_sigmoid(double a) {
  if (a >= 0.0) return 1.0 / (1.0 + ::exp(-a));
  const double e = ::exp(a);
  return e / (1.0 + e);
}

HD inline ActEval activate(Act act, double a) {
  ActEval r{0.0, 0.0, 0.0};
  switch (act) {
    case Act::kRelu:
      if (a > 0.0) {
        r.s = a;
        r.ds = 1.0;
      }
      break;
    case Act::kGelu: {
      // Exact gelu: a * Phi(a).
      const double kInvSqrt2 = 0.70710678118654752440;
      const double kInvSqrt2Pi = 0.39894228040143267794;
      const double cdf = 0.5 * (1.0 + ::erf(a * kInvSqrt2));
      const double pdf = kInvSqrt2Pi * ::exp(-0.5 * a * a);
      r.s = a * cdf;
      r.ds = cdf + a * pdf;
      r.d2s = pdf * (2.0 - a * a);
      break;
    }
    case Act::kSilu: {
      const double sg = stable_sigmoid(a);
      r.s = a * sg;
      r.ds = sg * (1.0 + a * (1.0 - sg));
      r.d2s = sg * (1.0 - sg) * (2.0 + a * (1.0 - 2.0 * sg));
      break;
    }
    case Act::kSigmoid: {
      const double sg = stable_sigmoid(a);
      r.s = sg;
      r.ds = sg * (1.0 - sg);
      r.d2s = r.ds * (1.0 - 2.0 * sg);
      break;
    }
  }
  return r;
}

}  // namespace gs
