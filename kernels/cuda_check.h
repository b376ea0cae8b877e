// Status checks for CUDA runtime, cuBLAS and cuSOLVER calls: a failure throws
// std::runtime_error naming the call site and the library's error string.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <stdexcept>
#include <string>

namespace gs {

inline void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " at " + file + ":" +
                             std::to_string(line) + ": " + cudaGetErrorString(e));
}

inline const char* cusolver_status_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cuSOLVER error";
  }
}

inline void cusolver_check(cusolverStatus_t s, const char* what, const char* file, int line) {
  if (s != CUSOLVER_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuSOLVER error in ") + what + " at " + file + ":" +
                             std::to_string(line) + ": " + cusolver_status_name(s) + " (" +
                             std::to_string(static_cast<int>(s)) + ")");
}

inline void cublas_check(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + " at " + file + ":" +
                             std::to_string(line) + ": " + cublasGetStatusString(s) + " (" +
                             std::to_string(static_cast<int>(s)) + ")");
}

}  // namespace gs

#define CUDA_CHECK(call) ::gs::cuda_check((call), #call, __FILE__, __LINE__)
#define CUSOLVER_CHECK(call) ::gs::cusolver_check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::gs::cublas_check((call), #call, __FILE__, __LINE__)
// After a kernel launch: launch-configuration errors surface here, execution errors at the
// next synchronizing call.
#define CUDA_CHECK_LAUNCH(name) ::gs::cuda_check(cudaGetLastError(), name, __FILE__, __LINE__)
