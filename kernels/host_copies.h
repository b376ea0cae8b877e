// HostCopies: the CUDA backend's copies between the host and the device, counted.
#pragma once

#include <cuda_runtime_api.h>

#include "cuda_check.h"
#include "gpusweep/backend/backend.h"

namespace gs {

// The one place the backend copies between the host and the device: every copy goes through
// to_device or to_host, asynchronous on the given stream, and counts its bytes by direction
// (Backend::host_transfers). What a library moves by itself is not counted: the arrays of
// sizes that cublasDgemmGroupedBatched takes on the host (jtj_gemm, off by default).
class HostCopies {
 public:
  void to_device(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    count_.bytes_to_device += bytes;
  }
  void to_host(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    count_.bytes_to_host += bytes;
  }
  const HostTransfers& count() const { return count_; }

 private:
  HostTransfers count_;
};

}  // namespace gs
