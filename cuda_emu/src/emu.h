// The emulated CUDA device's internals, shared by the runtime, cuBLAS and cuSOLVER parts:
// its settings, errors, device memory, streams and the block scheduler.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace gs_emu {

// Settings, read once from the environment (README: "The emulated CUDA device").
struct Config {
  std::size_t memory;  // GPUSWEEP_EMU_MEMORY: device memory in bytes (suffix K, M or G)
  int workers;         // GPUSWEEP_EMU_THREADS: host threads that run blocks
  std::uint64_t seed;  // GPUSWEEP_EMU_SEED: thread order between barriers; 0: ascending
  bool protect;        // GPUSWEEP_EMU_PROTECT=0 leaves device memory readable by the host
};
const Config& config();

// One lock over the runtime: every API call holds it, and so does the work it runs.
std::recursive_mutex& api_mutex();
using Lock = std::lock_guard<std::recursive_mutex>;

// "cuda_emu: " + msg on stderr.
void note(const std::string& msg);
// The same, then abort(): a misuse a GPU would answer with undefined behaviour or a hang.
[[noreturn]] void fatal(const std::string& msg);

// Errors as the runtime reports them: fail sets this host thread's last error and returns
// it; a sticky error (a fault during execution) is returned by every later call.
cudaError_t fail(cudaError_t e);
cudaError_t sticky();
void set_sticky(cudaError_t e, const std::string& why);
cudaError_t take_last_error();
cudaError_t peek_last_error();
// The sticky error if there is one, else the visible-device check: every API call that
// needs a device starts with it.
cudaError_t ready();
int visible_devices();

// Device memory: allocations from one reserved range of the address space, each in its own
// pages between two inaccessible guard pages, filled with 0xff bytes (NaN) when allocated.
// Outside a DeviceScope the pages are inaccessible too (unless GPUSWEEP_EMU_PROTECT=0), so
// that a host access to device memory faults and is named.
cudaError_t dev_malloc(void** p, std::size_t size);
cudaError_t dev_free(void* p);
std::size_t dev_used();
// [p, p + bytes) lies inside one live allocation (a one-past-the-end pointer counts as
// inside when bytes is 0).
bool is_device(const void* p, std::size_t bytes = 0);
// Whether p lies anywhere in the reserved range (live, freed or guard).
bool in_arena(const void* p);
// What p is, for messages: inside, past or before which allocation, freed, or host memory.
std::string describe(const void* p);

// While one exists, device memory is accessible: streams run their work inside one.
class DeviceScope {
 public:
  DeviceScope();
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
};

// Streams: each holds its work until the host synchronizes with it or another stream's
// work waits on one of its events.
struct Stream;
// The stream of a handle (the legacy default stream for null); null with the error for a
// handle that is not a live stream.
Stream* stream_of(cudaStream_t s, cudaError_t* e);
// Appends work to s. what names it in messages.
void enqueue(Stream* s, const char* what, std::function<void()> work);
// Runs s's work enqueued so far, and the work of other streams it waits on; returns the
// sticky error, if any.
cudaError_t drain(Stream* s);
cudaError_t drain_all();

// Runs the kernel body over grid x block threads: blocks spread over the worker threads,
// each block's threads as fibers on one of them (blocks.cpp), or one after another without
// fibers when the kernel has no barriers. launch_id seeds the order.
void run_kernel(const char* name, dim3 grid, dim3 block, const std::function<void()>& body,
                std::uint64_t launch_id, bool barriers);
// The kernel, block and thread running on this host thread, for fault messages ("" when none).
std::string running_kernel();

}  // namespace gs_emu
