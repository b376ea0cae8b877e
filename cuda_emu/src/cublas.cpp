// The cuBLAS routines of the emulated CUDA device, over the host BLAS: handles bound to a
// stream, the batched double GEMMs and the triangular solves (one, and batched). Arguments are
// checked when the call is made, with cuBLAS's statuses; the products run when the handle's stream runs, on device memory, and
// a pointer that is not device memory there is a fault (cudaErrorIllegalAddress).
#include <cublas_v2.h>

#include <algorithm>
#include <string>
#include <vector>

#include "emu.h"

extern "C" void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
                       const double* beta, double* c, const int* ldc);

extern "C" void dtrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m,
                       const int* n, const double* alpha, const double* a, const int* lda, double* b, const int* ldb);

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasPointerMode_t mode = CUBLAS_POINTER_MODE_HOST;
};

namespace {

using namespace gs_emu;

bool op_ok(cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; }
char op_char(cublasOperation_t t) { return t == CUBLAS_OP_N ? 'N' : 'T'; }  // C is T for real matrices

struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  double alpha, beta;
  int lda, ldb, ldc;
};

// cuBLAS's argument checks of one GEMM: sizes, operations and leading dimensions.
bool gemm_args_ok(const Gemm& g) {
  if (!op_ok(g.ta) || !op_ok(g.tb) || g.m < 0 || g.n < 0 || g.k < 0) return false;
  const int rows_a = g.ta == CUBLAS_OP_N ? g.m : g.k, rows_b = g.tb == CUBLAS_OP_N ? g.k : g.n;
  return g.lda >= std::max(1, rows_a) && g.ldb >= std::max(1, rows_b) && g.ldc >= std::max(1, g.m);
}

// Bytes an ld x cols column-major operand spans: (cols - 1) ld + rows doubles.
std::size_t span_bytes(int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return 0;
  return (static_cast<std::size_t>(cols - 1) * ld + rows) * sizeof(double);
}

// Runs one GEMM on device memory; false (after a sticky fault naming it) when an operand is
// not device memory.
bool run_gemm(const char* api, long long problem, const Gemm& g, const double* A, const double* B, double* C) {
  const int rows_a = g.ta == CUBLAS_OP_N ? g.m : g.k, cols_a = g.ta == CUBLAS_OP_N ? g.k : g.m;
  const int rows_b = g.tb == CUBLAS_OP_N ? g.k : g.n, cols_b = g.tb == CUBLAS_OP_N ? g.n : g.k;
  const struct {
    const char* name;
    const void* p;
    std::size_t bytes;
  } ops[3] = {{"A", A, g.k > 0 ? span_bytes(rows_a, cols_a, g.lda) : 0},
              {"B", B, g.k > 0 ? span_bytes(rows_b, cols_b, g.ldb) : 0},
              {"C", C, span_bytes(g.m, g.n, g.ldc)}};
  for (const auto& o : ops)
    if (o.bytes > 0 && !is_device(o.p, o.bytes)) {
      set_sticky(cudaErrorIllegalAddress, std::string(api) + ", problem " + std::to_string(problem) + ": " + o.name +
                                              " (" + std::to_string(o.bytes) + " bytes) is at " + describe(o.p));
      return false;
    }
  if (g.m == 0 || g.n == 0) return true;
  const char ta = op_char(g.ta), tb = op_char(g.tb);
  dgemm_(&ta, &tb, &g.m, &g.n, &g.k, &g.alpha, A, &g.lda, B, &g.ldb, &g.beta, C, &g.ldc);
  return true;
}

Stream* handle_stream(cublasHandle_t h) {
  cudaError_t e = cudaSuccess;
  return stream_of(h->stream, &e);
}

// Triangular solves as BLAS's dtrsm: B := alpha op(A)^-1 B (side left) or alpha B op(A)^-1
// (side right), with its arguments checked as cuBLAS checks them.
struct Trsm {
  cublasSideMode_t side;
  cublasFillMode_t uplo;
  cublasOperation_t trans;
  cublasDiagType_t diag;
  int m, n, lda, ldb;
  double alpha;
  int k() const { return side == CUBLAS_SIDE_LEFT ? m : n; }
};

bool trsm_args_ok(const Trsm& t) {
  return (t.side == CUBLAS_SIDE_LEFT || t.side == CUBLAS_SIDE_RIGHT) &&
         (t.uplo == CUBLAS_FILL_MODE_LOWER || t.uplo == CUBLAS_FILL_MODE_UPPER) && op_ok(t.trans) &&
         (t.diag == CUBLAS_DIAG_UNIT || t.diag == CUBLAS_DIAG_NON_UNIT) && t.m >= 0 && t.n >= 0 &&
         t.lda >= std::max(1, t.k()) && t.ldb >= std::max(1, t.m);
}

// One solve when the stream runs: A and B must be device memory (else the sticky fault,
// naming problem p of api, and false).
bool run_trsm(const char* api, long long p, const Trsm& t, const double* A, double* B) {
  const struct {
    const char* name;
    const void* ptr;
    std::size_t bytes;
  } ops[2] = {{"A", A, span_bytes(t.k(), t.k(), t.lda)}, {"B", B, span_bytes(t.m, t.n, t.ldb)}};
  for (const auto& o : ops)
    if (o.bytes > 0 && !is_device(o.ptr, o.bytes)) {
      set_sticky(cudaErrorIllegalAddress, std::string(api) + ": " + o.name + " of problem " + std::to_string(p) + " (" +
                                              std::to_string(o.bytes) + " bytes) is at " + describe(o.ptr));
      return false;
    }
  if (t.m == 0 || t.n == 0) return true;
  const char sd = t.side == CUBLAS_SIDE_LEFT ? 'L' : 'R', ul = t.uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U',
             tr = op_char(t.trans), dg = t.diag == CUBLAS_DIAG_UNIT ? 'U' : 'N';
  dtrsm_(&sd, &ul, &tr, &dg, &t.m, &t.n, &t.alpha, A, &t.lda, B, &t.ldb);
  return true;
}

// A solve's arguments checked as cuBLAS checks them when the call is made (under the API
// lock): into *t and the handle's stream *s, or the status that refuses the call.
cublasStatus_t trsm_call(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                         cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const double* alpha, int lda,
                         int ldb, Trsm* t, Stream** s) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha) return CUBLAS_STATUS_INVALID_VALUE;
  *t = Trsm{side, uplo, trans, diag, m, n, lda, ldb, *alpha};
  if (!trsm_args_ok(*t)) return CUBLAS_STATUS_INVALID_VALUE;
  if (handle->mode != CUBLAS_POINTER_MODE_HOST) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  *s = handle_stream(handle);
  return *s ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  Lock lock(api_mutex());
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  if (ready() != cudaSuccess) return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  Lock lock(api_mutex());
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  Lock lock(api_mutex());
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  cudaError_t e = cudaSuccess;
  if (!stream_of(stream, &e)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const double* alpha, const double* A, int lda,
                                         long long int strideA, const double* B, int ldb, long long int strideB,
                                         const double* beta, double* C, int ldc, long long int strideC,
                                         int batchCount) {
  Lock lock(api_mutex());
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta || batchCount < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (handle->mode != CUBLAS_POINTER_MODE_HOST) return CUBLAS_STATUS_NOT_SUPPORTED;
  const Gemm g{transa, transb, m, n, k, *alpha, *beta, lda, ldb, ldc};
  if (!gemm_args_ok(g)) return CUBLAS_STATUS_INVALID_VALUE;
  if (sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUBLAS_STATUS_INVALID_VALUE;
  if (batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  enqueue(s, "cublasDgemmStridedBatched", [=] {
    for (int b = 0; b < batchCount; ++b)
      if (!run_gemm("cublasDgemmStridedBatched", b, g, A + b * strideA, B + b * strideB, C + b * strideC)) return;
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDtrsm_v2(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                              cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const double* alpha,
                              const double* A, int lda, double* B, int ldb) {
  Lock lock(api_mutex());
  Trsm t;
  Stream* s = nullptr;
  if (const cublasStatus_t st = trsm_call(handle, side, uplo, trans, diag, m, n, alpha, lda, ldb, &t, &s))
    return st;
  enqueue(s, "cublasDtrsm_v2", [=] { run_trsm("cublasDtrsm_v2", 0, t, A, B); });
  return CUBLAS_STATUS_SUCCESS;
}

// The same solve for batchCount problems of one size; the pointer arrays, device memory, are
// read when the stream runs.
cublasStatus_t cublasDtrsmBatched(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                                  cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const double* alpha,
                                  const double* const A[], int lda, double* const B[], int ldb, int batchCount) {
  Lock lock(api_mutex());
  if (handle && batchCount < 0) return CUBLAS_STATUS_INVALID_VALUE;
  Trsm t;
  Stream* s = nullptr;
  if (const cublasStatus_t st = trsm_call(handle, side, uplo, trans, diag, m, n, alpha, lda, ldb, &t, &s))
    return st;
  if (batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  const char* api = "cublasDtrsmBatched";
  enqueue(s, api, [=] {
    const std::size_t bytes = static_cast<std::size_t>(batchCount) * sizeof(double*);
    for (const void* arr : {static_cast<const void*>(A), static_cast<const void*>(B)})
      if (!is_device(arr, bytes)) {
        set_sticky(cudaErrorIllegalAddress, std::string(api) + ": a pointer array of " + std::to_string(batchCount) +
                                                " entries is at " + describe(arr));
        return;
      }
    for (int b = 0; b < batchCount; ++b)
      if (!run_trsm(api, b, t, A[b], B[b])) return;
  });
  return CUBLAS_STATUS_SUCCESS;
}

// The problem arrays on the host are read now; the pointer arrays, device memory, when the
// stream runs.
cublasStatus_t cublasDgemmGroupedBatched(cublasHandle_t handle, const cublasOperation_t transa_array[],
                                         const cublasOperation_t transb_array[], const int m_array[],
                                         const int n_array[], const int k_array[], const double alpha_array[],
                                         const double* const Aarray[], const int lda_array[],
                                         const double* const Barray[], const int ldb_array[],
                                         const double beta_array[], double* const Carray[], const int ldc_array[],
                                         int group_count, const int group_size[]) {
  Lock lock(api_mutex());
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (group_count < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (handle->mode != CUBLAS_POINTER_MODE_HOST) return CUBLAS_STATUS_NOT_SUPPORTED;
  std::vector<Gemm> groups(group_count);
  std::vector<int> sizes(group_count);
  long long problems = 0;
  for (int i = 0; i < group_count; ++i) {
    groups[i] = Gemm{transa_array[i], transb_array[i], m_array[i], n_array[i], k_array[i], alpha_array[i],
                     beta_array[i], lda_array[i], ldb_array[i], ldc_array[i]};
    sizes[i] = group_size[i];
    if (!gemm_args_ok(groups[i]) || sizes[i] < 0) return CUBLAS_STATUS_INVALID_VALUE;
    problems += sizes[i];
  }
  if (sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUBLAS_STATUS_INVALID_VALUE;
  if (problems == 0) return CUBLAS_STATUS_SUCCESS;
  const char* api = "cublasDgemmGroupedBatched";
  enqueue(s, api, [=] {
    const std::size_t bytes = static_cast<std::size_t>(problems) * sizeof(double*);
    for (const void* arr : {static_cast<const void*>(Aarray), static_cast<const void*>(Barray),
                            static_cast<const void*>(Carray)})
      if (!is_device(arr, bytes)) {
        set_sticky(cudaErrorIllegalAddress, std::string(api) + ": a pointer array of " + std::to_string(problems) +
                                                " entries is at " + describe(arr));
        return;
      }
    long long p = 0;
    for (int i = 0; i < group_count; ++i)
      for (int j = 0; j < sizes[i]; ++j, ++p)
        if (!run_gemm(api, p, groups[i], Aarray[p], Barray[p], Carray[p])) return;
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
