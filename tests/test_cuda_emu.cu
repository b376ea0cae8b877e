// The emulated CUDA device itself (cuda_emu/): each way it makes a bug show that a GPU would
// show, each error as the runtime reports it, and the library routines against known
// answers. Built and run only with -DGPUSWEEP_EMULATE_CUDA=ON, compiled as the kernels are.
#include <cublas_v2.h>
#include <cusolverDn.h>
#include <gtest/gtest.h>
#include <thrust/device_vector.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <cub/device/device_segmented_reduce.cuh>
#include <numeric>
#include <string>
#include <vector>

#include "cuda_emu/copies.h"
#include "cuda_emu/work.h"
#include "launch.cuh"

namespace {

constexpr int kThreads = 128;

// Block b sums in[b * kThreads + t] into out[b]: each thread stores its value in shared
// memory, and the last thread adds them up after the barrier (with_barrier false leaves it
// out: a race that threads running in ascending order would never show).
__global__ void last_thread_sum_kernel(const double* in, double* out, bool with_barrier) {
  GS_SHARED(double, sh, [kThreads]);
  const int t = threadIdx.x;
  sh[t] = in[blockIdx.x * kThreads + t];
  if (with_barrier) __syncthreads();
  if (t == kThreads - 1) {
    double sum = 0.0;
    for (int k = 0; k < kThreads; ++k) sum += sh[k];
    out[blockIdx.x] = sum;
  }
}

// Blocks of last_thread_sum_kernel whose sum differs from the host's.
int wrong_sums(bool with_barrier) {
  constexpr int kBlocks = 64;
  std::vector<double> in(kBlocks * kThreads);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<double>(i % 97) + 0.25;
  double* d_in = nullptr;
  double* d_out = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d_in), in.size() * sizeof(double));
  cudaMalloc(reinterpret_cast<void**>(&d_out), kBlocks * sizeof(double));
  cudaMemcpy(d_in, in.data(), in.size() * sizeof(double), cudaMemcpyHostToDevice);
  GS_LAUNCH(last_thread_sum_kernel, kBlocks, kThreads, 0, nullptr)(d_in, d_out, with_barrier);
  std::vector<double> out(kBlocks);
  if (cudaMemcpy(out.data(), d_out, kBlocks * sizeof(double), cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
  int wrong = 0;
  for (int b = 0; b < kBlocks; ++b) {
    double want = 0.0;
    for (int t = 0; t < kThreads; ++t) want += in[b * kThreads + t];
    if (out[b] != want) ++wrong;
  }
  cudaFree(d_in);
  cudaFree(d_out);
  return wrong;
}

// Each thread reads its shared slot before any thread writes it, then writes its block's
// number there: every block must see NaN, whatever block ran before it on the same thread.
__global__ void shared_before_write_kernel(double* out) {
  GS_SHARED(double, sh, [kThreads]);
  out[blockIdx.x * kThreads + threadIdx.x] = sh[threadIdx.x];
  __syncthreads();
  sh[threadIdx.x] = blockIdx.x;
}

// Thread 0 returns before the barrier the others wait at.
__global__ void early_return_kernel(double* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1.0;
}

// Odd and even threads wait at different barriers.
__global__ void split_barrier_kernel(double* out) {
  if (threadIdx.x % 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0;
}

__global__ void write_kernel(double* p, long long index, double v) { p[index] = v; }

__global__ void add_kernel(double* p, double v) { p[threadIdx.x] += v; }

// Thread 0 writes sh[index], through a pointer (UndefinedBehaviorSanitizer's bounds check
// catches sh[kThreads] itself; through a pointer only AddressSanitizer can).
__global__ void shared_overflow_kernel(double* out, int index) {
  GS_SHARED(double, sh, [kThreads]);
  sh[threadIdx.x] = 1.0;
  __syncthreads();
  double* p = &sh[0];
  if (threadIdx.x == 0) p[index] = 2.0;
  __syncthreads();
  out[threadIdx.x] = sh[threadIdx.x];
}

__global__ void too_much_shared_kernel(double* out) {
  GS_SHARED(double, a, [4096]);
  GS_SHARED(double, b, [4096]);
  a[threadIdx.x] = 1.0;
  b[threadIdx.x] = 2.0;
  out[threadIdx.x] = a[threadIdx.x] + b[threadIdx.x];
}

std::vector<double> to_host(const double* d, std::size_t n) {
  std::vector<double> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(double), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

double* to_device(const std::vector<double>& h) {
  double* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), h.size() * sizeof(double)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(double), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

// Death tests re-run the binary: the device's worker threads do not survive a fork.
class CudaEmuDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// The order of the threads between barriers is shuffled (GPUSWEEP_EMU_SEED), so a missing
// barrier gives wrong sums in nearly every block, as a GPU's warps would.
TEST(CudaEmu, ShuffledThreadsExposeAMissingBarrier) {
  if (const char* s = std::getenv("GPUSWEEP_EMU_SEED"); s && std::string(s) == "0")
    GTEST_SKIP() << "GPUSWEEP_EMU_SEED=0 keeps the threads in order";
  EXPECT_EQ(wrong_sums(true), 0);
  EXPECT_GT(wrong_sums(false), 32) << "the race went unseen in most blocks";
}

// In ascending order (GPUSWEEP_EMU_SEED=0) the same race goes unseen.
TEST_F(CudaEmuDeathTest, AscendingThreadsHideTheMissingBarrier) {
  setenv("GPUSWEEP_EMU_SEED", "0", 1);
  EXPECT_EXIT(std::exit(wrong_sums(false) == 0 && wrong_sums(true) == 0 ? 0 : 3), ::testing::ExitedWithCode(0), "");
  unsetenv("GPUSWEEP_EMU_SEED");
}

TEST(CudaEmu, FreshDeviceAndSharedMemoryHoldNaN) {
  constexpr int kBlocks = 40;
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), kBlocks * kThreads * sizeof(double)), cudaSuccess);
  for (double v : to_host(d, kBlocks * kThreads)) ASSERT_TRUE(std::isnan(v));
  // Twice, so that every worker thread has run blocks that wrote the shared array before.
  for (int rep = 0; rep < 2; ++rep) {
    GS_LAUNCH(shared_before_write_kernel, kBlocks, kThreads, 0, nullptr)(d);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    for (double v : to_host(d, kBlocks * kThreads)) ASSERT_TRUE(std::isnan(v)) << "rep " << rep;
  }
  cudaFree(d);
}

TEST_F(CudaEmuDeathTest, BarrierNotReachedByEveryThreadAborts) {
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), kThreads * sizeof(double));
        GS_LAUNCH(early_return_kernel, 1, kThreads, 0, nullptr)(d);
        cudaDeviceSynchronize();
      },
      "kernel early_return_kernel, block \\(0,0,0\\): __syncthreads at test_cuda_emu.cu:[0-9]+ is not reached by "
      "every thread of the block: 127 of 128 threads wait there .*thread \\(0,0,0\\) returned");
}

TEST_F(CudaEmuDeathTest, ThreadsAtDifferentBarriersAbort) {
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), kThreads * sizeof(double));
        GS_LAUNCH(split_barrier_kernel, 1, kThreads, 0, nullptr)(d);
        cudaDeviceSynchronize();
      },
      "kernel split_barrier_kernel, block \\(0,0,0\\): threads wait at different __syncthreads");
}

TEST_F(CudaEmuDeathTest, MoreThan48KiBOfSharedMemoryAborts) {
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), kThreads * sizeof(double));
        GS_LAUNCH(too_much_shared_kernel, 1, kThreads, 0, nullptr)(d);
        cudaDeviceSynchronize();
      },
      "kernel too_much_shared_kernel, block \\(0,0,0\\): 65536 bytes of static shared memory");
}

// The host reads device memory through a device pointer: it faults, and the message says so.
TEST_F(CudaEmuDeathTest, HostReadOfDeviceMemoryFaults) {
  if (const char* s = std::getenv("GPUSWEEP_EMU_PROTECT"); s && std::string(s) == "0")
    GTEST_SKIP() << "GPUSWEEP_EMU_PROTECT=0 leaves device memory readable";
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), 100 * sizeof(double));
        volatile double x = d[3];
        (void)x;
      },
      "the host touched device memory at 0x[0-9a-f]+ \\(byte 24 of an allocation of 800 bytes\\)");
}

// A kernel that writes a page past the end of its allocation faults on the guard page.
TEST_F(CudaEmuDeathTest, KernelWritePastTheAllocationFaults) {
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), 100 * sizeof(double));
        GS_LAUNCH(write_kernel, 1, 1, 0, nullptr)(d, 100 + 512, 1.0);
        cudaDeviceSynchronize();
      },
      "kernel write_kernel, block \\(0,0,0\\), thread \\(0,0,0\\): illegal address 0x[0-9a-f]+, 4096 bytes past the "
      "end of the device allocation of 800 bytes");
}

#if defined(__SANITIZE_ADDRESS__)
// Within the allocation's last page, AddressSanitizer catches what the guard page cannot.
TEST_F(CudaEmuDeathTest, KernelWriteJustPastTheAllocationIsCaughtByAddressSanitizer) {
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), 100 * sizeof(double) + 8);
        GS_LAUNCH(write_kernel, 1, 1, 0, nullptr)(d, 101, 1.0);
        cudaDeviceSynchronize();
      },
      "AddressSanitizer: use-after-poison");
}

// Shared memory is a heap array per block here, so a write past its end is caught too.
TEST_F(CudaEmuDeathTest, SharedWritePastTheArrayIsCaughtByAddressSanitizer) {
  EXPECT_DEATH(
      {
        double* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), kThreads * sizeof(double));
        GS_LAUNCH(shared_overflow_kernel, 1, kThreads, 0, nullptr)(d, kThreads);
        cudaDeviceSynchronize();
      },
      "AddressSanitizer: heap-buffer-overflow");
}
#endif

// The same kernel within its array: a control for the test above, in every build.
TEST(CudaEmu, SharedWriteWithinTheArrayRuns) {
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), kThreads * sizeof(double)), cudaSuccess);
  GS_LAUNCH(shared_overflow_kernel, 2, kThreads, 0, nullptr)(d, kThreads - 1);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<double> h = to_host(d, kThreads);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(h[t], t == kThreads - 1 ? 2.0 : 1.0) << t;
  cudaFree(d);
}

// A kernel given a host pointer: a GPU faults when it runs, and the runtime reports an
// illegal address at the next synchronization and from then on (a sticky error).
TEST_F(CudaEmuDeathTest, HostPointerKernelArgumentIsAnIllegalAddress) {
  EXPECT_EXIT(
      {
        std::vector<double> host(kThreads, 0.0);
        GS_LAUNCH(add_kernel, 1, kThreads, 0, nullptr)(host.data(), 1.0);
        if (cudaGetLastError() != cudaSuccess) std::exit(3);  // the launch itself is fine
        if (cudaDeviceSynchronize() != cudaErrorIllegalAddress) std::exit(4);
        if (host[0] != 0.0) std::exit(5);
        void* p = nullptr;
        if (cudaMalloc(&p, 8) != cudaErrorIllegalAddress) std::exit(6);
        if (cudaGetLastError() != cudaErrorIllegalAddress || cudaGetLastError() != cudaErrorIllegalAddress)
          std::exit(7);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "kernel add_kernel: argument 1 is 0x[0-9a-f]+, which is not device memory");
}

// Copies check their direction against where the pointers are; a wrong one is cudaErrorInvalidValue,
// reported once by cudaGetLastError (not sticky).
TEST(CudaEmu, CopiesCheckWhereTheirPointersAre) {
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 10 * sizeof(double)), cudaSuccess);
  std::vector<double> h(10, 1.0), back(10, 0.0);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 10 * sizeof(double), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(back.data(), h.data(), 10 * sizeof(double), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 11 * sizeof(double), cudaMemcpyHostToDevice), cudaErrorInvalidValue)
      << "one double past the allocation";
  EXPECT_EQ(cudaMemcpy(d, h.data(), 10 * sizeof(double), cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(back.data(), d, 10 * sizeof(double), cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(back, h);
  EXPECT_EQ(cudaMemsetAsync(h.data(), 0, 8, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(std::string(cudaGetErrorString(cudaGetLastError())), "invalid argument");
  EXPECT_EQ(cudaFree(h.data()), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaErrorInvalidValue) << "freed twice";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
}

// The count of the bytes copied between the host and the device (cuda_emu/copies.h): by
// direction, the direction of cudaMemcpyDefault read from the pointers, asynchronous copies
// when they are made, and neither refused copies nor those within the host or the device.
TEST(CudaEmu, CountsTheBytesItCopiesByDirection) {
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 16 * sizeof(double)), cudaSuccess);
  std::vector<double> h(16, 1.0), back(16, 0.0);
  const gs_emu::CopiedBytes c0 = gs_emu::bytes_copied();
  ASSERT_EQ(cudaMemcpy(d, h.data(), 16 * sizeof(double), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(d, h.data(), 3 * sizeof(double), cudaMemcpyDefault, nullptr), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(back.data(), d, 5 * sizeof(double), cudaMemcpyDeviceToHost, nullptr), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back.data(), d + 8, 7 * sizeof(double), cudaMemcpyDefault), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d + 8, d, 8 * sizeof(double), cudaMemcpyDeviceToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back.data(), h.data(), 16 * sizeof(double), cudaMemcpyHostToHost), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 17 * sizeof(double), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back.data(), h.data(), 8, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  cudaGetLastError();
  const gs_emu::CopiedBytes c1 = gs_emu::bytes_copied();
  EXPECT_EQ(c1.to_device - c0.to_device, 19 * sizeof(double));
  EXPECT_EQ(c1.to_host - c0.to_host, 12 * sizeof(double));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(gs_emu::bytes_copied().to_host, c1.to_host) << "counted again when the stream ran";
  cudaFree(d);
}

// The count of the work given to the streams (cuda_emu/work.h), by name: each launch under its
// kernel's name and each asynchronous memset as one, counted when enqueued, and nothing for a
// launch the runtime refuses.
TEST(CudaEmu, CountsTheWorkItIsGivenByName) {
  double* d = to_device(std::vector<double>(kThreads, 1.0));
  const std::map<std::string, std::uint64_t> w0 = gs_emu::work_counts();
  auto delta = [&](const std::map<std::string, std::uint64_t>& w1, const std::string& name) {
    const auto a = w0.find(name), b = w1.find(name);
    return (b == w1.end() ? 0 : b->second) - (a == w0.end() ? 0 : a->second);
  };
  GS_LAUNCH(add_kernel, 1, kThreads, 0, nullptr)(d, 1.0);
  GS_LAUNCH(add_kernel, 1, kThreads, 0, nullptr)(d, 2.0);
  GS_LAUNCH(add_kernel, 1, 2048, 0, nullptr)(d, 3.0);  // refused: too many threads per block
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  ASSERT_EQ(cudaMemsetAsync(d, 0, sizeof(double), nullptr), cudaSuccess);
  const std::map<std::string, std::uint64_t> w1 = gs_emu::work_counts();
  EXPECT_EQ(delta(w1, "add_kernel"), 2u);
  EXPECT_EQ(delta(w1, "cudaMemsetAsync"), 1u);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(delta(gs_emu::work_counts(), "add_kernel"), 2u) << "counted again when the stream ran";
  cudaFree(d);
}

// Work waits in its stream: a copy back is not there before the host synchronizes with the
// stream, or with an event of it that another stream's work waits on.
TEST(CudaEmu, StreamsRunTheirWorkOnlyWhenSomethingWaitsForIt) {
  cudaStream_t a = nullptr, b = nullptr;
  cudaEvent_t ev = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), cudaSuccess);
  double* d = to_device(std::vector<double>(kThreads, 1.0));
  std::vector<double> h(kThreads, 0.0);
  GS_LAUNCH(add_kernel, 1, kThreads, 0, a)(d, 2.0);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), d, kThreads * sizeof(double), cudaMemcpyDeviceToHost, a), cudaSuccess);
  // Before the stream runs, the destination holds NaN: no old value passes for the result.
  EXPECT_TRUE(std::isnan(h[0])) << "the copy ran before anything waited for it: " << h[0];
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_TRUE(std::isnan(h[kThreads - 1])) << "synchronizing another stream ran it";
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_EQ(h[0], 3.0);
  // Stream b's copy waits on a's event: synchronizing b runs a's work up to the record.
  GS_LAUNCH(add_kernel, 1, kThreads, 0, a)(d, 4.0);
  ASSERT_EQ(cudaEventRecord(ev, a), cudaSuccess);
  GS_LAUNCH(add_kernel, 1, kThreads, 0, a)(d, 100.0);  // after the record: b does not wait for it
  ASSERT_EQ(cudaStreamWaitEvent(b, ev, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), d, kThreads * sizeof(double), cudaMemcpyDeviceToHost, b), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(h[0], 7.0);
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_EQ(to_host(d, 1)[0], 107.0);
  // An event created without timing has no elapsed time.
  float ms = 0.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, ev, ev), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
  cudaFree(d);
  cudaEventDestroy(ev);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

// A copy from host memory reads it when the call is made, as from pageable memory on a GPU:
// the caller may reuse the buffer at once.
TEST(CudaEmu, AsyncCopyFromTheHostReadsItAtTheCall) {
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(double)), cudaSuccess);
  double v = 5.0;
  ASSERT_EQ(cudaMemcpyAsync(d, &v, sizeof v, cudaMemcpyHostToDevice, nullptr), cudaSuccess);
  v = 6.0;
  EXPECT_EQ(to_host(d, 1)[0], 5.0);
  cudaFree(d);
}

TEST(CudaEmu, LaunchConfigurationErrorsAreNotSticky) {
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), kThreads * sizeof(double)), cudaSuccess);
  GS_LAUNCH(add_kernel, 1, 2048, 0, nullptr)(d, 1.0);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  GS_LAUNCH(add_kernel, 0, kThreads, 0, nullptr)(d, 1.0);
  EXPECT_EQ(std::string(cudaGetErrorString(cudaGetLastError())), "invalid configuration argument");
  GS_LAUNCH(add_kernel, dim3(1, 70000), kThreads, 0, nullptr)(d, 1.0);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaFree(d);
}

// The memory size is a setting; allocations past it are cudaErrorMemoryAllocation, which is
// not sticky, and cudaMemGetInfo counts what is allocated. Exits 0 when all holds.
void check_64_mib_device() {
  std::size_t free0 = 0, total = 0, free1 = 0;
  if (cudaMemGetInfo(&free0, &total) != cudaSuccess || total != (64u << 20) || free0 != total) std::exit(3);
  void* p = nullptr;
  void* q = nullptr;
  if (cudaMalloc(&p, 65u << 20) != cudaErrorMemoryAllocation) std::exit(4);
  if (std::string(cudaGetErrorString(cudaGetLastError())) != "out of memory") std::exit(5);
  if (cudaMalloc(&p, 40u << 20) != cudaSuccess) std::exit(6);
  if (cudaMemGetInfo(&free1, &total) != cudaSuccess || free1 != free0 - (40u << 20)) std::exit(7);
  if (cudaMalloc(&q, 40u << 20) != cudaErrorMemoryAllocation) std::exit(8);
  if (cudaFree(p) != cudaSuccess || cudaMalloc(&q, 40u << 20) != cudaSuccess) std::exit(9);
  std::exit(0);
}

TEST_F(CudaEmuDeathTest, MemorySizeIsASetting) {
  setenv("GPUSWEEP_EMU_MEMORY", "64M", 1);
  EXPECT_EXIT(check_64_mib_device(), ::testing::ExitedWithCode(0), "");
  unsetenv("GPUSWEEP_EMU_MEMORY");
}

TEST(CudaEmu, HiddenByCudaVisibleDevices) {
  int n = -1;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 1);
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaErrorNoDevice);
  EXPECT_EQ(n, 0);
  EXPECT_EQ(std::string(cudaGetErrorString(cudaGetLastError())), "no CUDA-capable device is detected");
  setenv("CUDA_VISIBLE_DEVICES", "0", 1);
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  unsetenv("CUDA_VISIBLE_DEVICES");
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_NE(std::string(prop.name).find("emulated"), std::string::npos) << prop.name;
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  cudaGetLastError();
}

// Thrust's device_vector and for_each, and CUB's segmented sum, against the host.
TEST(CudaEmu, ThrustAndCubShims) {
  thrust::device_vector<double> zeros(1000);
  thrust::device_vector<int> sevens(300, 7);
  const std::vector<double> h(1000, 0.0);
  EXPECT_EQ(to_host(thrust::raw_pointer_cast(zeros.data()), 1000), h);
  std::vector<int> s(300);
  ASSERT_EQ(cudaMemcpy(s.data(), thrust::raw_pointer_cast(sevens.data()), 300 * sizeof(int), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(s, std::vector<int>(300, 7));
  std::vector<double> in(777);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = std::sin(static_cast<double>(i));
  const std::vector<long long> seg = {0, 10, 10, 500, 777};
  thrust::device_vector<double> d_in(in.begin(), in.end()), d_out(seg.size() - 1);
  thrust::device_vector<long long> d_seg(seg.begin(), seg.end());
  std::size_t bytes = 0;
  ASSERT_EQ(cub::DeviceSegmentedReduce::Sum(nullptr, bytes, thrust::raw_pointer_cast(d_in.data()),
                                            thrust::raw_pointer_cast(d_out.data()), 4,
                                            thrust::raw_pointer_cast(d_seg.data()),
                                            thrust::raw_pointer_cast(d_seg.data()) + 1, nullptr),
            cudaSuccess);
  thrust::device_vector<char> temp(bytes);
  ASSERT_EQ(cub::DeviceSegmentedReduce::Sum(thrust::raw_pointer_cast(temp.data()), bytes,
                                            thrust::raw_pointer_cast(d_in.data()),
                                            thrust::raw_pointer_cast(d_out.data()), 4,
                                            thrust::raw_pointer_cast(d_seg.data()),
                                            thrust::raw_pointer_cast(d_seg.data()) + 1, nullptr),
            cudaSuccess);
  const std::vector<double> out = to_host(thrust::raw_pointer_cast(d_out.data()), 4);
  for (int k = 0; k < 4; ++k) {
    const double want = std::accumulate(in.begin() + seg[k], in.begin() + seg[k + 1], 0.0);
    EXPECT_NEAR(out[k], want, 1e-12) << k;
  }
}

// The Cholesky routines: per-matrix info of the batched factorization where one matrix is
// indefinite from its third row, the solves against a known solution, and cuSOLVER's
// argument checks.
TEST(CudaEmu, CholeskyRoutinesReportPerMatrixInfoAndCheckArguments) {
  constexpr int n = 5;
  // A = tridiag(-1, 4, -1): positive definite. B: the same with B(2,2) = -10 (leading minor 3 < 0).
  std::vector<double> A(n * n, 0.0);
  for (int i = 0; i < n; ++i) {
    A[i + i * n] = 4.0;
    if (i > 0) A[i + (i - 1) * n] = A[(i - 1) + i * n] = -1.0;
  }
  std::vector<double> B = A;
  B[2 + 2 * n] = -10.0;
  const std::vector<double> x = {1, -2, 3, 0.5, 2};
  std::vector<double> rhs(n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) rhs[i] += A[i + j * n] * x[j];
  double* dA = to_device(A);
  double* dB = to_device(B);
  double* dr = to_device(rhs);
  double* dr2 = to_device(rhs);
  const std::vector<double*> hp = {dA, dB}, hr = {dr, dr2};
  double** dp = nullptr;
  double** drp = nullptr;
  int* dinfo = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dp), 2 * sizeof(double*)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&drp), 2 * sizeof(double*)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dinfo), 3 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dp, hp.data(), 2 * sizeof(double*), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(drp, hr.data(), 2 * sizeof(double*), cudaMemcpyHostToDevice), cudaSuccess);
  cusolverDnHandle_t h = nullptr;
  ASSERT_EQ(cusolverDnCreate(&h), CUSOLVER_STATUS_SUCCESS);
  EXPECT_EQ(cusolverDnDpotrfBatched(h, CUBLAS_FILL_MODE_LOWER, n, dp, n - 1, dinfo, 2), CUSOLVER_STATUS_INVALID_VALUE);
  EXPECT_EQ(cusolverDnDpotrsBatched(h, CUBLAS_FILL_MODE_LOWER, n, 2, dp, n, drp, n, dinfo + 2, 1),
            CUSOLVER_STATUS_INVALID_VALUE)
      << "one right-hand side only";
  ASSERT_EQ(cusolverDnDpotrfBatched(h, CUBLAS_FILL_MODE_LOWER, n, dp, n, dinfo, 2), CUSOLVER_STATUS_SUCCESS);
  ASSERT_EQ(cusolverDnDpotrsBatched(h, CUBLAS_FILL_MODE_LOWER, n, 1, dp, n, drp, n, dinfo + 2, 1),
            CUSOLVER_STATUS_SUCCESS);
  std::vector<int> info(3, -99);
  ASSERT_EQ(cudaMemcpy(info.data(), dinfo, 3 * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(info, (std::vector<int>{0, 3, 0}));
  const std::vector<double> sol = to_host(dr, n);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(sol[i], x[i], 1e-14) << i;
  // The 64-bit API: a workspace smaller than asked for is refused.
  cusolverDnParams_t params = nullptr;
  ASSERT_EQ(cusolverDnCreateParams(&params), CUSOLVER_STATUS_SUCCESS);
  std::size_t dev = 0, host = 0;
  ASSERT_EQ(cusolverDnXpotrf_bufferSize(h, params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, dB, n, CUDA_R_64F, &dev,
                                        &host),
            CUSOLVER_STATUS_SUCCESS);
  void* work = nullptr;
  ASSERT_EQ(cudaMalloc(&work, dev), cudaSuccess);
  EXPECT_EQ(cusolverDnXpotrf(h, params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, dB, n, CUDA_R_64F, work, dev - 1,
                             nullptr, 0, dinfo),
            CUSOLVER_STATUS_INVALID_VALUE);
  EXPECT_EQ(cusolverDnXpotrf(h, params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dB, n, CUDA_R_64F, work, dev, nullptr, 0,
                             dinfo),
            CUSOLVER_STATUS_NOT_SUPPORTED);
  cusolverDnDestroyParams(params);
  cusolverDnDestroy(h);
  for (void* p : {static_cast<void*>(dA), static_cast<void*>(dB), static_cast<void*>(dr), static_cast<void*>(dr2),
                  static_cast<void*>(dp), static_cast<void*>(drp), static_cast<void*>(dinfo), work})
    cudaFree(p);
}

// The batched eigensolver against the known spectrum of tridiag(-1, 2, -1), 2 - 2 cos(k pi /
// (n + 1)), ascending, one matrix per size of the batch's stride.
TEST(CudaEmu, BatchedEigenvaluesOfAKnownSpectrum) {
  constexpr int n = 7, batch = 3;
  std::vector<double> A(static_cast<std::size_t>(n) * n * batch, 0.0);
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < n; ++i) {
      A[b * n * n + i + i * n] = 2.0 * (b + 1);
      if (i > 0) A[b * n * n + i + (i - 1) * n] = A[b * n * n + (i - 1) + i * n] = -1.0 * (b + 1);
    }
  double* dA = to_device(A);
  double* dW = nullptr;
  int* dinfo = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dW), n * batch * sizeof(double)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dinfo), batch * sizeof(int)), cudaSuccess);
  cusolverDnHandle_t h = nullptr;
  cusolverDnParams_t params = nullptr;
  ASSERT_EQ(cusolverDnCreate(&h), CUSOLVER_STATUS_SUCCESS);
  ASSERT_EQ(cusolverDnCreateParams(&params), CUSOLVER_STATUS_SUCCESS);
  std::size_t dev = 0, host = 0;
  ASSERT_EQ(cusolverDnXsyevBatched_bufferSize(h, params, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                              CUDA_R_64F, nullptr, n, CUDA_R_64F, nullptr, CUDA_R_64F, &dev, &host,
                                              batch),
            CUSOLVER_STATUS_SUCCESS);
  thrust::device_vector<char> work(dev);
  ASSERT_EQ(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, dA,
                                   n, CUDA_R_64F, dW, CUDA_R_64F, thrust::raw_pointer_cast(work.data()), dev, nullptr,
                                   0, dinfo, batch),
            CUSOLVER_STATUS_SUCCESS);
  const std::vector<double> w = to_host(dW, n * batch);
  std::vector<int> info(batch);
  ASSERT_EQ(cudaMemcpy(info.data(), dinfo, batch * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < batch; ++b) {
    EXPECT_EQ(info[b], 0);
    for (int k = 1; k <= n; ++k)
      EXPECT_NEAR(w[b * n + k - 1], (b + 1) * (2.0 - 2.0 * std::cos(k * M_PI / (n + 1))), 1e-13) << b << " " << k;
  }
  for (double v : to_host(dA, n * n * batch)) ASSERT_TRUE(std::isnan(v)) << "A survives the eigensolver";
  cusolverDnDestroyParams(params);
  cusolverDnDestroy(h);
  cudaFree(dA);
  cudaFree(dW);
  cudaFree(dinfo);
}

// The two batched GEMMs against products written out by hand.
// cublasDtrsmBatched (and cublasDtrsm) against back and forward substitution written out here:
// B_b := op(A_b)^-1 B_b with A_b upper triangular, for both ops; a leading dimension below m
// is refused with cuBLAS's status.
TEST(CudaEmu, BatchedTriangularSolvesAgainstTheHost) {
  constexpr int m = 3, n = 2, batch = 2;
  std::vector<double> a(m * m * batch, 0.0), b(m * n * batch);
  for (int q = 0; q < batch; ++q)
    for (int j = 0; j < m; ++j)
      for (int i = 0; i <= j; ++i) a[q * m * m + i + j * m] = i == j ? 2.0 + q + j : 0.25 * (i + 1) - 0.5 * q * j;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::cos(1.0 + static_cast<double>(i));
  // The solutions: U x = y by back substitution, U^T x = y by forward substitution.
  auto solve = [&](int q, bool transposed) {
    std::vector<double> x(b.begin() + q * m * n, b.begin() + (q + 1) * m * n);
    const double* u = a.data() + q * m * m;
    for (int c = 0; c < n; ++c) {
      double* xc = x.data() + c * m;
      if (!transposed) {
        for (int i = m - 1; i >= 0; --i) {
          for (int j = i + 1; j < m; ++j) xc[i] -= u[i + j * m] * xc[j];
          xc[i] /= u[i + i * m];
        }
      } else {
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < i; ++j) xc[i] -= u[j + i * m] * xc[j];
          xc[i] /= u[i + i * m];
        }
      }
    }
    return x;
  };
  double* dA = to_device(a);
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const double one = 1.0;
  for (cublasOperation_t op : {CUBLAS_OP_N, CUBLAS_OP_T}) {
    double* dB = to_device(b);
    const std::vector<double*> ptrs = {dA, dA + m * m, dB, dB + m * n};
    double** dptrs = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dptrs), ptrs.size() * sizeof(double*)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dptrs, ptrs.data(), ptrs.size() * sizeof(double*), cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cublasDtrsmBatched(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, op, CUBLAS_DIAG_NON_UNIT, m, n, &one,
                                 dptrs, m, dptrs + 2, m - 1, batch),
              CUBLAS_STATUS_INVALID_VALUE);
    ASSERT_EQ(cublasDtrsmBatched(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, op, CUBLAS_DIAG_NON_UNIT, m, n, &one,
                                 dptrs, m, dptrs + 2, m, batch),
              CUBLAS_STATUS_SUCCESS);
    const std::vector<double> got = to_host(dB, m * n * batch);
    for (int q = 0; q < batch; ++q) {
      const std::vector<double> want = solve(q, op == CUBLAS_OP_T);
      for (int i = 0; i < m * n; ++i) EXPECT_NEAR(got[q * m * n + i], want[i], 1e-13) << "problem " << q << " entry " << i;
    }
    // The single solve gives the first problem's answer.
    double* dB1 = to_device(std::vector<double>(b.begin(), b.begin() + m * n));
    ASSERT_EQ(cublasDtrsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, op, CUBLAS_DIAG_NON_UNIT, m, n, &one, dA, m,
                          dB1, m),
              CUBLAS_STATUS_SUCCESS);
    const std::vector<double> got1 = to_host(dB1, m * n);
    for (int i = 0; i < m * n; ++i) EXPECT_EQ(got1[i], got[i]) << i;
    cudaFree(dB);
    cudaFree(dB1);
    cudaFree(dptrs);
  }
  cublasDestroy(h);
  cudaFree(dA);
}

TEST(CudaEmu, BatchedGemmsAgainstTheHost) {
  constexpr int m = 3, k = 4, batch = 2;
  std::vector<double> a(m * k * batch);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.5 * static_cast<double>(i) - 3.0;
  // C_b = A_b A_b^T (m x m), A_b column-major m x k.
  std::vector<double> want(m * m * batch, 0.0);
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < m; ++j)
        for (int q = 0; q < k; ++q) want[b * m * m + i + j * m] += a[b * m * k + i + q * m] * a[b * m * k + j + q * m];
  double* dA = to_device(a);
  double* dC = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dC), m * m * batch * sizeof(double)), cudaSuccess);
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const double one = 1.0, zero = 0.0;
  EXPECT_EQ(cublasDgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, m, m, k, &one, dA, m - 1, m * k, dA, m, m * k,
                                      &zero, dC, m, m * m, batch),
            CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_EQ(cublasDgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, m, m, k, &one, dA, m, m * k, dA, m, m * k, &zero,
                                      dC, m, m * m, batch),
            CUBLAS_STATUS_SUCCESS);
  std::vector<double> c = to_host(dC, m * m * batch);
  for (std::size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(c[i], want[i], 1e-12) << i;
  // Grouped: one group of both problems, C += 2 A A^T.
  const std::vector<double*> ptrs = {dA, dA + m * k, dC, dC + m * m};
  double** dptrs = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dptrs), ptrs.size() * sizeof(double*)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dptrs, ptrs.data(), ptrs.size() * sizeof(double*), cudaMemcpyHostToDevice), cudaSuccess);
  const cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_T;
  const int mm = m, kk = k, size = batch;
  const double two = 2.0;
  ASSERT_EQ(cublasDgemmGroupedBatched(h, &ta, &tb, &mm, &mm, &kk, &two, dptrs, &mm, dptrs, &mm, &one, dptrs + 2, &mm,
                                      1, &size),
            CUBLAS_STATUS_SUCCESS);
  c = to_host(dC, m * m * batch);
  for (std::size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(c[i], 3.0 * want[i], 1e-12) << i;
  cublasDestroy(h);
  cudaFree(dA);
  cudaFree(dC);
  cudaFree(dptrs);
}

}  // namespace
