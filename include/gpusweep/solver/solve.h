// The damped, Jacobi-scaled Cholesky solve of one Newton system, on the host (LAPACK).
// The CUDA backend does the same steps on the device with cuSOLVER.
#pragma once

namespace gs {

// Rows whose |H_ii| is at most kSingularRel * max_j |H_jj| are treated as singular (a dead
// neuron): identity row and column, zero right-hand side.
constexpr double kSingularRel = 1e-14;

// Jacobi scale of the symmetric m x m matrix H (column-major, both triangles valid):
// scale[i] = 1/sqrt|H_ii|, or 0 for a singular row. Returns the scaled gradient norm
// max_i |g_i| scale[i].
double jacobi_scale(int m, const double* H, const double* g, double* scale);

// Solves (S H S + lambda I) z = -S g, step = S z, using work (m*m doubles). Returns the
// LAPACK dpotrf info (0 on success, > 0 when the damped matrix is not positive definite);
// on success writes step and *gdotp = g . step.
int damped_solve(int m, const double* H, const double* g, const double* scale, double lambda,
                 double* work, double* step, double* gdotp);

}  // namespace gs
