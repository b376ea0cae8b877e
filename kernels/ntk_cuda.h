// NTK spectra on the GPU: J by a kernel over (network, point), the Gram matrices by cuBLAS
// strided-batched dgemm and their eigenvalues by cusolverDnXsyevBatched, one call per group
// of networks that share N and P (so one matrix size). A plain C++ header, free of CUDA types.
#pragma once

#include <string>
#include <vector>

#include "gpusweep/backend/spectra.h"

namespace gs {

// The spectra of every network of the batch on CUDA device `device`, in batch order, the
// same as ntk_spectra_cpu's up to rounding. *backend names the device. A network whose
// eigensolver does not converge (info > 0), whose Jacobian is not finite, or whose matrices
// alone do not fit in device memory gets ok = false with the reason; the rest go on. Throws
// std::runtime_error when no device is visible or a CUDA, cuBLAS or cuSOLVER call fails.
std::vector<NtkSpectrum> ntk_spectra_cuda(const Batch& batch, int device, std::string* backend);

}  // namespace gs
