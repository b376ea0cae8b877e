// The CUDA runtime API of the emulated device: settings, errors as the runtime reports them,
// the device and its properties, memory and copies, and kernel launches. Streams and events
// are in streams.cpp, the block scheduler in blocks.cpp.
#include <cuda_runtime_api.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "cuda_emu/copies.h"
#include "cuda_emu/kernel.h"
#include "emu.h"

namespace gs_emu {
namespace {

[[noreturn]] void bad_setting(const char* name, const char* value, const char* want) {
  fatal(std::string(name) + "='" + value + "' is not " + want);
}

std::size_t parse_bytes(const char* name, const char* v) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (errno || end == v) bad_setting(name, v, "a size such as 8G, 512M or 1048576");
  std::size_t mult = 1;
  if (*end == 'K' || *end == 'k') mult = std::size_t(1) << 10, ++end;
  else if (*end == 'M' || *end == 'm') mult = std::size_t(1) << 20, ++end;
  else if (*end == 'G' || *end == 'g') mult = std::size_t(1) << 30, ++end;
  if (*end || n == 0 || n > (std::size_t(1) << 40) / mult) bad_setting(name, v, "a size such as 8G, 512M or 1048576");
  return static_cast<std::size_t>(n) * mult;
}

unsigned long long parse_count(const char* name, const char* v, unsigned long long lo, unsigned long long hi) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi)
    bad_setting(name, v, ("a whole number from " + std::to_string(lo) + " to " + std::to_string(hi)).c_str());
  return n;
}

Config read_config() {
  Config c{std::size_t(8) << 30, 0, 1, true};
  if (const char* v = std::getenv("GPUSWEEP_EMU_MEMORY"); v && *v) c.memory = parse_bytes("GPUSWEEP_EMU_MEMORY", v);
  if (const char* v = std::getenv("GPUSWEEP_EMU_THREADS"); v && *v)
    c.workers = static_cast<int>(parse_count("GPUSWEEP_EMU_THREADS", v, 1, 256));
  if (c.workers == 0) c.workers = std::max(1u, std::thread::hardware_concurrency());
  if (const char* v = std::getenv("GPUSWEEP_EMU_SEED"); v && *v)
    c.seed = parse_count("GPUSWEEP_EMU_SEED", v, 0, ~0ull);
  if (const char* v = std::getenv("GPUSWEEP_EMU_PROTECT"); v && *v)
    c.protect = parse_count("GPUSWEEP_EMU_PROTECT", v, 0, 1) != 0;
  return c;
}

thread_local cudaError_t tl_last = cudaSuccess;
CopiedBytes g_copied;  // under api_mutex
cudaError_t g_sticky = cudaSuccess;
std::uint64_t g_launches = 0;

constexpr int kMaxThreadsPerBlock = 1024;
constexpr std::size_t kSharedPerBlock = 48 << 10;

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost: return "HostToHost";
    case cudaMemcpyHostToDevice: return "HostToDevice";
    case cudaMemcpyDeviceToHost: return "DeviceToHost";
    case cudaMemcpyDeviceToDevice: return "DeviceToDevice";
    case cudaMemcpyDefault: return "Default";
  }
  return "unknown";
}

// A copy of n bytes on stream s. The host side of an asynchronous copy from host memory is
// read when the call is made (pageable memory goes through a staging buffer, so the caller
// may reuse it at once); the host side of one to host memory is filled with NaN bytes when
// the call is made; everything else happens when the stream runs. sync: the host
// waits for it, as cudaMemcpy does.
cudaError_t copy(const char* api, void* dst, const void* src, std::size_t n, cudaMemcpyKind kind, cudaStream_t h,
                 bool sync) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  cudaError_t se = cudaSuccess;
  Stream* s = stream_of(h, &se);
  if (!s) return fail(se);
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  const bool dst_dev = is_device(dst, n), src_dev = is_device(src, n);
  const bool dst_host = !in_arena(dst), src_host = !in_arena(src);
  bool want_dst_dev = false, want_src_dev = false;
  switch (kind) {
    case cudaMemcpyHostToHost: break;
    case cudaMemcpyHostToDevice: want_dst_dev = true; break;
    case cudaMemcpyDeviceToHost: want_src_dev = true; break;
    case cudaMemcpyDeviceToDevice: want_dst_dev = want_src_dev = true; break;
    case cudaMemcpyDefault: want_dst_dev = !dst_host, want_src_dev = !src_host; break;
    default: return fail(cudaErrorInvalidMemcpyDirection);
  }
  auto side_ok = [&](bool want_dev, bool dev, bool host) { return want_dev ? dev : host; };
  if (!side_ok(want_dst_dev, dst_dev, dst_host) || !side_ok(want_src_dev, src_dev, src_host)) {
    const bool dst_bad = !side_ok(want_dst_dev, dst_dev, dst_host);
    const bool want_dev = dst_bad ? want_dst_dev : want_src_dev;
    note(std::string(api) + " of " + std::to_string(n) + " bytes, " + kind_name(kind) + ": the " +
         (dst_bad ? "destination " : "source ") + describe(dst_bad ? dst : src) +
         (want_dev ? "; the copy wants that many bytes of device memory there" : "; the copy wants a host address"));
    return fail(cudaErrorInvalidValue);
  }
  if (!want_dst_dev && !want_src_dev) {  // host to host: no device involved
    std::memmove(dst, src, n);
    return cudaSuccess;
  }
  if (want_src_dev && !want_dst_dev) g_copied.to_host += n;
  if (want_dst_dev && !want_src_dev) g_copied.to_device += n;
  if (want_src_dev && !want_dst_dev && !sync) {
    // Until the stream runs the copy, the host destination holds NaN bytes: a read without
    // the synchronization sees NaN, never a value from before that could pass for the result.
    std::memset(dst, 0xff, n);
  }
  if (!want_src_dev && !sync) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + n);
    enqueue(s, api, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    enqueue(s, api, [dst, src, n] { std::memmove(dst, src, n); });
  }
  return sync ? drain(s) : cudaSuccess;
}

cudaError_t fill(const char* api, void* p, int value, std::size_t n, cudaStream_t h, bool sync) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  cudaError_t se = cudaSuccess;
  Stream* s = stream_of(h, &se);
  if (!s) return fail(se);
  if (n == 0) return cudaSuccess;
  if (!is_device(p, n)) {
    note(std::string(api) + " of " + std::to_string(n) + " bytes: " + describe(p) + " cannot hold them");
    return fail(cudaErrorInvalidValue);
  }
  enqueue(s, api, [p, value, n] { std::memset(p, value, n); });
  return sync ? drain(s) : cudaSuccess;
}

}  // namespace

CopiedBytes bytes_copied() {
  Lock lock(api_mutex());
  return g_copied;
}

const Config& config() {
  static const Config c = read_config();
  return c;
}

std::recursive_mutex& api_mutex() {
  static auto* m = new std::recursive_mutex;
  return *m;
}

void note(const std::string& msg) { std::fprintf(stderr, "cuda_emu: %s\n", msg.c_str()); }

void fatal(const std::string& msg) {
  note(msg);
  std::abort();
}

cudaError_t fail(cudaError_t e) {
  if (e != cudaSuccess) tl_last = e;
  return e;
}

cudaError_t sticky() { return g_sticky; }

void set_sticky(cudaError_t e, const std::string& why) {
  note(why);
  if (g_sticky == cudaSuccess) g_sticky = e;
}

cudaError_t take_last_error() {
  if (g_sticky != cudaSuccess) return g_sticky;
  const cudaError_t e = tl_last;
  tl_last = cudaSuccess;
  return e;
}

cudaError_t peek_last_error() { return g_sticky != cudaSuccess ? g_sticky : tl_last; }

// CUDA_VISIBLE_DEVICES as the runtime reads it: the emulated device is device 0, visible
// unless the variable is set and does not list 0 first. Read at each call, so that a test
// can hide the device.
int visible_devices() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!v) return 1;
  std::string first(v);
  first = first.substr(0, first.find(','));
  return first == "0" ? 1 : 0;
}

cudaError_t ready() {
  if (g_sticky != cudaSuccess) return g_sticky;
  return visible_devices() > 0 ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t launch_kernel(const char* name, dim3 grid, dim3 block, std::size_t shmem, cudaStream_t h,
                          std::vector<PtrArg> ptrs, std::function<void()> body, bool barriers) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  const unsigned long long threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
      threads == 0 || threads > kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > 64)
    return fail(cudaErrorInvalidConfiguration);
  if (shmem > kSharedPerBlock) return fail(cudaErrorInvalidValue);
  if (shmem > 0) fatal(std::string(name) + ": dynamic shared memory (extern __shared__) is not emulated");
  cudaError_t se = cudaSuccess;
  Stream* s = stream_of(h, &se);
  if (!s) return fail(se);
  const std::uint64_t id = ++g_launches;
  enqueue(s, name, [name, grid, block, ptrs = std::move(ptrs), body = std::move(body), id, barriers] {
    for (const PtrArg& a : ptrs)
      if (a.p && !is_device(a.p)) {
        set_sticky(cudaErrorIllegalAddress, std::string("kernel ") + name + ": argument " + std::to_string(a.index + 1) +
                                                " is " + describe(a.p));
        return;
      }
    run_kernel(name, grid, block, body, id, barriers);
  });
  return cudaSuccess;
}

}  // namespace gs_emu

using namespace gs_emu;

extern "C" {

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    default: return "unrecognized error code";
  }
}

cudaError_t cudaGetLastError(void) {
  Lock lock(api_mutex());
  return take_last_error();
}

cudaError_t cudaPeekAtLastError(void) {
  Lock lock(api_mutex());
  return peek_last_error();
}

cudaError_t cudaGetDeviceCount(int* count) {
  Lock lock(api_mutex());
  if (!count) return fail(cudaErrorInvalidValue);
  *count = visible_devices();
  return *count > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int* device) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  if (!device) return fail(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  if (!prop) return fail(cudaErrorInvalidValue);
  if (device != 0) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "emulated CUDA device (cuda_emu, %d host threads)", config().workers);
  prop->totalGlobalMem = config().memory;
  prop->sharedMemPerBlock = kSharedPerBlock;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = config().workers;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 64;
  return cudaSuccess;
}

// Every kernel of an emulated build runs on the emulated device: there is always an image.
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  if (!attr || !func) return fail(cudaErrorInvalidDeviceFunction);
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = kMaxThreadsPerBlock;
  attr->binaryVersion = 90;
  attr->ptxVersion = 90;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t size) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  if (!p) return fail(cudaErrorInvalidValue);
  return fail(dev_malloc(p, size));
}

// Waits for all work first, as cudaFree does on a GPU.
cudaError_t cudaFree(void* p) {
  Lock lock(api_mutex());
  if (cudaError_t e = drain_all()) return e;
  return fail(dev_free(p));
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  if (!free_bytes || !total) return fail(cudaErrorInvalidValue);
  *total = config().memory;
  *free_bytes = config().memory - dev_used();
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  return copy("cudaMemcpy", dst, src, n, kind, nullptr, true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  return copy("cudaMemcpyAsync", dst, src, n, kind, s, false);
}

cudaError_t cudaMemset(void* p, int value, size_t n) { return fill("cudaMemset", p, value, n, nullptr, true); }

cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t s) {
  return fill("cudaMemsetAsync", p, value, n, s, false);
}

}  // extern "C"
