// The kernel side of the emulated CUDA device (cuda_emu): the built-in index variables of
// the thread that runs, __syncthreads, shared memory made fresh for each block, and the
// launch that replaces <<<...>>>. Kernels compiled with the host compiler include it through
// prelude.h; kernels/launch.cuh maps GS_LAUNCH and GS_SHARED onto it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace gs_emu {

// Where the running CUDA thread is. Each block runs on one host thread and each of its CUDA
// threads is a fiber there, so these are per host thread; the scheduler sets thread before
// it resumes a fiber.
struct Builtins {
  uint3 thread;
  uint3 block;
  uint3 block_dim;
  uint3 grid_dim;
};
// Initial-exec: kernels read it at every threadIdx, and a call to __tls_get_addr each time
// would cost more than many a kernel's work per thread.
extern __thread Builtins tl_builtins __attribute__((tls_model("initial-exec")));

// Waits until every thread of the block has reached this barrier. A barrier that some
// thread of the block does not reach, or threads at different barriers, abort the process
// naming the kernel, the block and the two sites.
void sync_threads(const char* file, int line);

// Where a kernel declares shared memory (key: one per declaration): the block's array of
// that declaration. The first thread of a block to get there allocates it on the heap, on its
// own, and fills it with NaN bytes (0xff), so that a read before any write of that block sees
// NaN, and an access past either end is AddressSanitizer's heap-buffer-overflow in a
// sanitized build; the block's arrays are freed when it ends.
void* shared_array(const void* key, std::size_t bytes, const char* name);

// A pointer argument of a launch: the runtime checks at execution that it points into device
// memory (or is null), as a kernel on a GPU would fault on a host pointer.
struct PtrArg {
  int index;
  const void* p;
};

// Enqueues body on stream s as a kernel of grid x block threads; returns the launch error
// (also the last error), as cudaGetLastError would after <<<...>>>.
// barriers false: the kernel never calls __syncthreads (the Thrust and CUB shims' kernels),
// so its threads run one after another without fibers.
cudaError_t launch_kernel(const char* name, dim3 grid, dim3 block, std::size_t shmem, cudaStream_t s,
                          std::vector<PtrArg> ptrs, std::function<void()> body, bool barriers = true);

template <class... P>
class Launcher {
 public:
  Launcher(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t shmem, cudaStream_t s,
           bool barriers = true)
      : name_(name), kernel_(kernel), grid_(grid), block_(block), shmem_(shmem), stream_(s), barriers_(barriers) {}

  // The arguments are converted to the kernel's parameter types and copied at launch, as
  // the CUDA runtime copies them.
  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "a kernel launch with the wrong number of arguments");
    using Args = std::tuple<std::decay_t<P>...>;
    auto args = std::make_shared<Args>(std::forward<A>(a)...);
    std::vector<PtrArg> ptrs;
    collect(*args, ptrs, std::index_sequence_for<P...>{});
    void (*k)(P...) = kernel_;
    launch_kernel(name_, grid_, block_, shmem_, stream_, std::move(ptrs), [k, args] { std::apply(k, *args); },
                  barriers_);
  }

 private:
  template <class T>
  static void add(int i, const T& v, std::vector<PtrArg>& ptrs) {
    if constexpr (std::is_pointer_v<T>) ptrs.push_back({i, static_cast<const void*>(v)});
  }
  template <class Args, std::size_t... I>
  static void collect(const Args& args, std::vector<PtrArg>& ptrs, std::index_sequence<I...>) {
    (add(static_cast<int>(I), std::get<I>(args), ptrs), ...);
  }

  const char* name_;
  void (*kernel_)(P...);
  dim3 grid_, block_;
  std::size_t shmem_;
  cudaStream_t stream_;
  bool barriers_;
};

template <class... P>
Launcher<P...> launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t shmem,
                      cudaStream_t s) {
  return Launcher<P...>(name, kernel, grid, block, shmem, s);
}

// A launch of a kernel that never waits at a barrier.
template <class... P>
Launcher<P...> launch_without_barriers(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                                       std::size_t shmem, cudaStream_t s) {
  return Launcher<P...>(name, kernel, grid, block, shmem, s, false);
}

}  // namespace gs_emu
