// The cuSOLVER routines of the emulated CUDA device, over the host LAPACK: Cholesky
// factorizations and solves (one matrix, 64-bit API, and batched), Householder QR (one matrix,
// 64-bit API) and the batched symmetric eigensolver, each with its argument checks and its per-matrix info written to device
// memory when the handle's stream runs. Workspace sizes are the emulation's own; a call that
// is given less than it asked for is refused as cuSOLVER refuses it.
#include <cusolverDn.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "emu.h"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b,
             const int* ldb, int* info);
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
            const int* lwork, int* info);
}

struct cusolverDnContext {
  cudaStream_t stream = nullptr;
};
struct cusolverDnParams {};

namespace {

using namespace gs_emu;

bool uplo_ok(cublasFillMode_t u) { return u == CUBLAS_FILL_MODE_LOWER || u == CUBLAS_FILL_MODE_UPPER; }
char uplo_char(cublasFillMode_t u) { return u == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U'; }

std::size_t potrf_bytes(long long n) { return sizeof(double) * (static_cast<std::size_t>(std::max(1LL, n)) * 64 + 128); }
std::size_t geqrf_bytes(long long n) { return sizeof(double) * (static_cast<std::size_t>(std::max(1LL, n)) * 64 + 128); }
std::size_t syev_bytes(long long n, long long batch) {
  return sizeof(double) * static_cast<std::size_t>(std::max(1LL, batch)) *
         (static_cast<std::size_t>(std::max(1LL, n)) * 34 + 64);
}

Stream* handle_stream(cusolverDnHandle_t h) {
  cudaError_t e = cudaSuccess;
  return stream_of(h->stream, &e);
}

// A fault when [p, p + bytes) is not device memory: false after the sticky error.
bool device_or_fault(const char* api, const char* what, const void* p, std::size_t bytes) {
  if (bytes == 0 || is_device(p, bytes)) return true;
  set_sticky(cudaErrorIllegalAddress, std::string(api) + ": " + what + " (" + std::to_string(bytes) +
                                          " bytes) is at " + describe(p));
  return false;
}

std::size_t matrix_bytes(long long n, long long ld, long long cols) {
  return n == 0 || cols == 0 ? 0 : (static_cast<std::size_t>(cols - 1) * ld + n) * sizeof(double);
}

}  // namespace

extern "C" {

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* handle) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_INVALID_VALUE;
  if (ready() != cudaSuccess) return CUSOLVER_STATUS_NOT_INITIALIZED;
  *handle = new cusolverDnContext;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  cudaError_t e = cudaSuccess;
  if (!stream_of(stream, &e)) return CUSOLVER_STATUS_INVALID_VALUE;
  handle->stream = stream;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t* params) {
  if (!params) return CUSOLVER_STATUS_INVALID_VALUE;
  *params = new cusolverDnParams;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t params) {
  if (!params) return CUSOLVER_STATUS_INVALID_VALUE;
  delete params;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrf_bufferSize(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                             cublasFillMode_t uplo, int64_t n, cudaDataType dataTypeA, const void*,
                                             int64_t lda, cudaDataType computeType, size_t* workspaceInBytesOnDevice,
                                             size_t* workspaceInBytesOnHost) {
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || !uplo_ok(uplo) || n < 0 || lda < std::max<int64_t>(1, n) || !workspaceInBytesOnDevice ||
      !workspaceInBytesOnHost)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || computeType != CUDA_R_64F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  *workspaceInBytesOnDevice = potrf_bytes(n);
  *workspaceInBytesOnHost = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrf(cusolverDnHandle_t handle, cusolverDnParams_t params, cublasFillMode_t uplo,
                                  int64_t n, cudaDataType dataTypeA, void* A, int64_t lda, cudaDataType computeType,
                                  void* bufferOnDevice, size_t workspaceInBytesOnDevice, void*, size_t,
                                  int* info) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || !uplo_ok(uplo) || n < 0 || n > INT_MAX || lda < std::max<int64_t>(1, n) || lda > INT_MAX)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || computeType != CUDA_R_64F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  if (workspaceInBytesOnDevice < potrf_bytes(n)) return CUSOLVER_STATUS_INVALID_VALUE;
  if (sticky() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUSOLVER_STATUS_INVALID_VALUE;
  const char* api = "cusolverDnXpotrf";
  const std::size_t ws = workspaceInBytesOnDevice;
  enqueue(s, api, [=] {
    double* a = static_cast<double*>(A);
    if (!device_or_fault(api, "A", a, matrix_bytes(n, lda, n)) || !device_or_fault(api, "info", info, sizeof(int)) ||
        !device_or_fault(api, "the device workspace", bufferOnDevice, ws))
      return;
    const int nn = static_cast<int>(n), ld = static_cast<int>(lda);
    const char u = uplo_char(uplo);
    int r = 0;
    if (nn > 0) dpotrf_(&u, &nn, a, &ld, &r);
    std::memset(bufferOnDevice, 0xff, ws);  // the workspace holds nothing afterwards
    *info = r;
  });
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrs(cusolverDnHandle_t handle, cusolverDnParams_t params, cublasFillMode_t uplo,
                                  int64_t n, int64_t nrhs, cudaDataType dataTypeA, const void* A, int64_t lda,
                                  cudaDataType dataTypeB, void* B, int64_t ldb, int* info) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || !uplo_ok(uplo) || n < 0 || n > INT_MAX || nrhs < 0 || nrhs > INT_MAX ||
      lda < std::max<int64_t>(1, n) || lda > INT_MAX || ldb < std::max<int64_t>(1, n) || ldb > INT_MAX)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || dataTypeB != CUDA_R_64F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  if (sticky() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUSOLVER_STATUS_INVALID_VALUE;
  const char* api = "cusolverDnXpotrs";
  enqueue(s, api, [=] {
    const double* a = static_cast<const double*>(A);
    double* b = static_cast<double*>(B);
    if (!device_or_fault(api, "A", a, matrix_bytes(n, lda, n)) || !device_or_fault(api, "B", b, matrix_bytes(n, ldb, nrhs)) ||
        !device_or_fault(api, "info", info, sizeof(int)))
      return;
    const int nn = static_cast<int>(n), nr = static_cast<int>(nrhs), la = static_cast<int>(lda),
              lb = static_cast<int>(ldb);
    const char u = uplo_char(uplo);
    int r = 0;
    if (nn > 0 && nr > 0) dpotrs_(&u, &nn, &nr, a, &la, b, &lb, &r);
    *info = r;
  });
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXgeqrf_bufferSize(cusolverDnHandle_t handle, cusolverDnParams_t params, int64_t m, int64_t n,
                                             cudaDataType dataTypeA, const void*, int64_t lda, cudaDataType dataTypeTau,
                                             const void*, cudaDataType computeType, size_t* workspaceInBytesOnDevice,
                                             size_t* workspaceInBytesOnHost) {
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || m < 0 || n < 0 || lda < std::max<int64_t>(1, m) || !workspaceInBytesOnDevice ||
      !workspaceInBytesOnHost)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || dataTypeTau != CUDA_R_64F || computeType != CUDA_R_64F)
    return CUSOLVER_STATUS_NOT_SUPPORTED;
  *workspaceInBytesOnDevice = geqrf_bytes(n);
  *workspaceInBytesOnHost = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

// Householder QR as LAPACK's dgeqrf: R on and above the diagonal, the reflectors below it and
// in tau (min(m, n) entries); info 0.
cusolverStatus_t cusolverDnXgeqrf(cusolverDnHandle_t handle, cusolverDnParams_t params, int64_t m, int64_t n,
                                  cudaDataType dataTypeA, void* A, int64_t lda, cudaDataType dataTypeTau, void* tau,
                                  cudaDataType computeType, void* bufferOnDevice, size_t workspaceInBytesOnDevice,
                                  void*, size_t, int* info) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || m < 0 || m > INT_MAX || n < 0 || n > INT_MAX || lda < std::max<int64_t>(1, m) || lda > INT_MAX)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || dataTypeTau != CUDA_R_64F || computeType != CUDA_R_64F)
    return CUSOLVER_STATUS_NOT_SUPPORTED;
  if (workspaceInBytesOnDevice < geqrf_bytes(n)) return CUSOLVER_STATUS_INVALID_VALUE;
  if (sticky() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUSOLVER_STATUS_INVALID_VALUE;
  const char* api = "cusolverDnXgeqrf";
  const std::size_t ws = workspaceInBytesOnDevice;
  enqueue(s, api, [=] {
    double* a = static_cast<double*>(A);
    double* t = static_cast<double*>(tau);
    const long long k = std::min(m, n);
    if (!device_or_fault(api, "A", a, matrix_bytes(m, lda, n)) ||
        !device_or_fault(api, "tau", t, static_cast<std::size_t>(k) * sizeof(double)) ||
        !device_or_fault(api, "info", info, sizeof(int)) ||
        !device_or_fault(api, "the device workspace", bufferOnDevice, ws))
      return;
    const int mm = static_cast<int>(m), nn = static_cast<int>(n), ld = static_cast<int>(lda);
    int r = 0;
    if (k > 0) {
      int lwork = -1;
      double q = 0.0;
      dgeqrf_(&mm, &nn, a, &ld, t, &q, &lwork, &r);
      lwork = std::max(1, static_cast<int>(q));
      std::vector<double> work(lwork);
      dgeqrf_(&mm, &nn, a, &ld, t, work.data(), &lwork, &r);
    }
    std::memset(bufferOnDevice, 0xff, ws);  // the workspace holds nothing afterwards
    *info = r;
  });
  return CUSOLVER_STATUS_SUCCESS;
}

// infoArray holds one info per matrix.
cusolverStatus_t cusolverDnDpotrfBatched(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, double* Aarray[],
                                         int lda, int* infoArray, int batchSize) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!uplo_ok(uplo) || n < 0 || lda < std::max(1, n) || batchSize < 0) return CUSOLVER_STATUS_INVALID_VALUE;
  if (sticky() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUSOLVER_STATUS_INVALID_VALUE;
  if (batchSize == 0) return CUSOLVER_STATUS_SUCCESS;
  const char* api = "cusolverDnDpotrfBatched";
  enqueue(s, api, [=] {
    if (!device_or_fault(api, "the pointer array", Aarray, batchSize * sizeof(double*)) ||
        !device_or_fault(api, "infoArray", infoArray, batchSize * sizeof(int)))
      return;
    const char u = uplo_char(uplo);
    for (int b = 0; b < batchSize; ++b) {
      if (!device_or_fault(api, ("matrix " + std::to_string(b)).c_str(), Aarray[b], matrix_bytes(n, lda, n))) return;
      int r = 0;
      if (n > 0) dpotrf_(&u, &n, Aarray[b], &lda, &r);
      infoArray[b] = r;
    }
  });
  return CUSOLVER_STATUS_SUCCESS;
}

// d_info is one int for the whole batch; cuSOLVER takes one right-hand side only.
cusolverStatus_t cusolverDnDpotrsBatched(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, int nrhs,
                                         double* A[], int lda, double* B[], int ldb, int* d_info, int batchSize) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!uplo_ok(uplo) || n < 0 || nrhs != 1 || lda < std::max(1, n) || ldb < std::max(1, n) || batchSize < 0)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (sticky() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUSOLVER_STATUS_INVALID_VALUE;
  if (batchSize == 0) return CUSOLVER_STATUS_SUCCESS;
  const char* api = "cusolverDnDpotrsBatched";
  enqueue(s, api, [=] {
    if (!device_or_fault(api, "the pointer array A", A, batchSize * sizeof(double*)) ||
        !device_or_fault(api, "the pointer array B", B, batchSize * sizeof(double*)) ||
        !device_or_fault(api, "info", d_info, sizeof(int)))
      return;
    const char u = uplo_char(uplo);
    int r = 0;
    for (int b = 0; b < batchSize && r == 0; ++b) {
      const std::string which = std::to_string(b);
      if (!device_or_fault(api, ("A of matrix " + which).c_str(), A[b], matrix_bytes(n, lda, n)) ||
          !device_or_fault(api, ("B of matrix " + which).c_str(), B[b], matrix_bytes(n, ldb, 1)))
        return;
      if (n > 0) dpotrs_(&u, &n, &nrhs, A[b], &lda, B[b], &ldb, &r);
    }
    *d_info = r;
  });
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXsyevBatched_bufferSize(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                                   cusolverEigMode_t jobz, cublasFillMode_t uplo, int64_t n,
                                                   cudaDataType dataTypeA, const void*, int64_t lda,
                                                   cudaDataType dataTypeW, const void*, cudaDataType computeType,
                                                   size_t* workspaceInBytesOnDevice, size_t* workspaceInBytesOnHost,
                                                   int64_t batchSize) {
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || (jobz != CUSOLVER_EIG_MODE_NOVECTOR && jobz != CUSOLVER_EIG_MODE_VECTOR) || !uplo_ok(uplo) || n < 0 ||
      lda < std::max<int64_t>(1, n) || batchSize < 0 || !workspaceInBytesOnDevice || !workspaceInBytesOnHost)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || dataTypeW != CUDA_R_64F || computeType != CUDA_R_64F)
    return CUSOLVER_STATUS_NOT_SUPPORTED;
  *workspaceInBytesOnDevice = syev_bytes(n, batchSize);
  *workspaceInBytesOnHost = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

// Eigenvalues ascending into W (n per matrix), info per matrix. Without vectors A's contents
// are destroyed, as cuSOLVER says: they become NaN here.
cusolverStatus_t cusolverDnXsyevBatched(cusolverDnHandle_t handle, cusolverDnParams_t params, cusolverEigMode_t jobz,
                                        cublasFillMode_t uplo, int64_t n, cudaDataType dataTypeA, void* A,
                                        int64_t lda, cudaDataType dataTypeW, void* W, cudaDataType computeType,
                                        void* bufferOnDevice, size_t workspaceInBytesOnDevice, void*, size_t,
                                        int* info, int64_t batchSize) {
  Lock lock(api_mutex());
  if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!params || (jobz != CUSOLVER_EIG_MODE_NOVECTOR && jobz != CUSOLVER_EIG_MODE_VECTOR) || !uplo_ok(uplo) || n < 0 ||
      lda < std::max<int64_t>(1, n) || batchSize < 0 || n * lda * batchSize > INT_MAX)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (dataTypeA != CUDA_R_64F || dataTypeW != CUDA_R_64F || computeType != CUDA_R_64F)
    return CUSOLVER_STATUS_NOT_SUPPORTED;
  if (workspaceInBytesOnDevice < syev_bytes(n, batchSize)) return CUSOLVER_STATUS_INVALID_VALUE;
  if (sticky() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  Stream* s = handle_stream(handle);
  if (!s) return CUSOLVER_STATUS_INVALID_VALUE;
  if (batchSize == 0) return CUSOLVER_STATUS_SUCCESS;
  const char* api = "cusolverDnXsyevBatched";
  const std::size_t ws = workspaceInBytesOnDevice;
  enqueue(s, api, [=] {
    double* a = static_cast<double*>(A);
    double* w = static_cast<double*>(W);
    const std::size_t per = static_cast<std::size_t>(lda) * n;
    if (!device_or_fault(api, "A", a, per * batchSize * sizeof(double)) ||
        !device_or_fault(api, "W", w, static_cast<std::size_t>(n) * batchSize * sizeof(double)) ||
        !device_or_fault(api, "info", info, batchSize * sizeof(int)) ||
        !device_or_fault(api, "the device workspace", bufferOnDevice, ws))
      return;
    const char jz = jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N', u = uplo_char(uplo);
    const int nn = static_cast<int>(n), ld = static_cast<int>(lda);
    std::vector<double> work(1);
    int lwork = -1, r = 0;
    if (nn > 0) {
      dsyev_(&jz, &u, &nn, a, &ld, w, work.data(), &lwork, &r);
      lwork = static_cast<int>(work[0]);
      work.resize(std::max(1, lwork));
    }
    for (int64_t b = 0; b < batchSize; ++b) {
      r = 0;
      if (nn > 0) dsyev_(&jz, &u, &nn, a + b * per, &ld, w + b * n, work.data(), &lwork, &r);
      info[b] = r;
    }
    if (jz == 'N') std::memset(a, 0xff, per * batchSize * sizeof(double));
    std::memset(bufferOnDevice, 0xff, ws);
  });
  return CUSOLVER_STATUS_SUCCESS;
}

}  // extern "C"
