// Compiles the shared network math for the device: one kernel per entry point, each thread
// evaluating one point of one network (thread k -> point k). It proves under nvcc that the
// headers the CPU backend uses are valid device code.
#include <cuda_runtime.h>

#include "gpusweep/model/network.h"
#include "launch.cuh"

namespace gs {

__global__ void math_check_kernel(Shape s, const double* theta, const double* x, int npts,
                                  double* y, double* rows, double* blocks) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= npts) return;
  const double* xk = x + static_cast<long>(k) * s.d;
  const int p = num_params(s);
  y[k] = evaluate(s, theta, xk) - jacobian_row(s, theta, xk, rows + static_cast<long>(k) * p);
  const int nk = neuron_num_params(s);
  const NeuronEval e = eval_neuron(s, theta, xk, 0);
  neuron_hessian(s, e, xk, blocks + static_cast<long>(k) * nk * nk);
  int b = 0, end = 0;
  if (has_block(s.arch, Block::kU)) stage_range(s, Block::kU, &b, &end);
  y[k] += stage_is_linear(s.arch, Block::kU) ? end - b : neuron_param_index(s, 0, nk - 1);
}

cudaError_t math_check(Shape s, const double* theta, const double* x, int npts, double* y,
                       double* rows, double* blocks, cudaStream_t stream) {
  const int threads = 128;
  GS_LAUNCH(math_check_kernel, (npts + threads - 1) / threads, threads, 0, stream)(
      s, theta, x, npts, y, rows, blocks);
  return cudaGetLastError();
}

}  // namespace gs
