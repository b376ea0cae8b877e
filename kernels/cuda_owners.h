// Owners of CUDA streams and events and of cuBLAS and cuSOLVER handles: each created
// resource is released however the code that created it ends, a constructor that throws half
// way included. The make_ functions check every status (cuda_check.h).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <memory>

#include "cuda_check.h"

namespace gs {

struct StreamDel {
  void operator()(CUstream_st* s) const { cudaStreamDestroy(s); }
};
struct EventDel {
  void operator()(CUevent_st* e) const { cudaEventDestroy(e); }
};
struct BlasDel {
  void operator()(cublasContext* h) const { cublasDestroy(h); }
};
struct SolverDel {
  void operator()(cusolverDnContext* h) const { cusolverDnDestroy(h); }
};
struct ParamsDel {
  void operator()(cusolverDnParams* p) const { cusolverDnDestroyParams(p); }
};
using Stream = std::unique_ptr<CUstream_st, StreamDel>;
using Event = std::unique_ptr<CUevent_st, EventDel>;
using Blas = std::unique_ptr<cublasContext, BlasDel>;
using Solver = std::unique_ptr<cusolverDnContext, SolverDel>;
using Params = std::unique_ptr<cusolverDnParams, ParamsDel>;

inline Stream make_stream() {
  cudaStream_t s = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}
inline Event make_event(unsigned flags) {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
  return Event(e);
}
inline Blas make_blas() {
  cublasHandle_t h = nullptr;
  CUBLAS_CHECK(cublasCreate(&h));
  return Blas(h);
}
// A cuSOLVER handle on stream s (the default stream when s is null).
inline Solver make_solver(cudaStream_t s = nullptr) {
  cusolverDnHandle_t h = nullptr;
  CUSOLVER_CHECK(cusolverDnCreate(&h));
  Solver owner(h);
  if (s != nullptr) CUSOLVER_CHECK(cusolverDnSetStream(h, s));
  return owner;
}
inline Params make_params() {
  cusolverDnParams_t p = nullptr;
  CUSOLVER_CHECK(cusolverDnCreateParams(&p));
  return Params(p);
}

}  // namespace gs
