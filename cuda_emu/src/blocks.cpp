// The block scheduler of the emulated CUDA device. A kernel's blocks spread over the worker
// threads; each block runs on one of them with each of its CUDA threads as a fiber
// (Boost.Context's fcontext, tens of nanoseconds a switch). The fibers of a block run one
// after another from one barrier to the next, in an order shuffled afresh for every stretch
// (GPUSWEEP_EMU_SEED; 0 keeps them ascending), so that a read of shared memory that a
// missing __syncthreads leaves unordered sees another thread's old or new value. A barrier
// that some threads of the block do not reach, or different barriers at once, abort.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "cuda_emu/kernel.h"
#include "emu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define GS_EMU_ASAN 1
#endif

namespace gs_emu {

__thread Builtins tl_builtins __attribute__((tls_model("initial-exec")));

namespace {

namespace bctx = boost::context::detail;

#ifdef GS_EMU_ASAN
constexpr std::size_t kStack = std::size_t(1) << 20;  // instrumented frames are larger
#else
constexpr std::size_t kStack = std::size_t(256) << 10;
#endif
constexpr int kMaxThreads = 1024;
constexpr std::size_t kSharedPerBlock = 48 << 10;

enum class State { kReady, kBarrier, kDone };

struct Fiber {
  bctx::fcontext_t self = nullptr;   // where the fiber goes on
  bctx::fcontext_t sched = nullptr;  // where its scheduler goes on
  State state = State::kReady;
  const char* file = nullptr;  // the barrier it waits at
  int line = 0;
  char* stack = nullptr;  // lowest usable address
  char* top = nullptr;    // where the fiber's frames start
  void* fake = nullptr;   // AddressSanitizer's fake stack while switched away
};

// What one host thread needs to run blocks: fiber stacks (a guard page below each), the
// fibers, and the block that runs. Made once per thread and kept until the process ends.
struct Worker {
  char* stacks = nullptr;
  std::vector<Fiber> fibers;
  std::vector<int> live;
  std::vector<uint3> coords;  // of each thread of the block shape below
  uint3 shape{0, 0, 0};
  std::vector<std::pair<const void*, void*>> shared;  // the running block's arrays, by declaration
  std::size_t shared_bytes = 0;
  const char* kernel = nullptr;
  const std::function<void()>* body = nullptr;
  Fiber* cur = nullptr;
  int cur_thread = -1;
  const void* sched_bottom = nullptr;  // the host thread's stack, for AddressSanitizer
  std::size_t sched_size = 0;
  void* sched_fake = nullptr;

  Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  static std::size_t slot() { return kStack + static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }
  void reserve() {
    if (stacks) return;
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, slot() * kMaxThreads, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) fatal(std::string("cannot map fiber stacks: ") + std::strerror(errno));
    stacks = static_cast<char*>(p);
    fibers.resize(kMaxThreads);
    for (int t = 0; t < kMaxThreads; ++t) {
      char* lo = stacks + slot() * t;
      mprotect(lo, page, PROT_NONE);  // a stack overflow faults
      fibers[t].stack = lo + page;
      // The tops of the stacks at different offsets within a page: at one offset every
      // fiber's frames would fall into the same few cache sets.
      fibers[t].top = fibers[t].stack + kStack - (static_cast<std::size_t>(t) * 7 * 64) % page;
    }
  }
};

// This host thread's worker state, made on first use and kept while the thread lives (the
// worker threads live as long as the process).
__thread Worker* tl_worker_ptr __attribute__((tls_model("initial-exec")));

Worker& worker() {
  if (!tl_worker_ptr) tl_worker_ptr = new Worker;
  return *tl_worker_ptr;
}

std::string basename_of(const char* path) {
  const char* s = std::strrchr(path, '/');
  return s ? s + 1 : path;
}

std::string triple(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

uint3 thread_coords(int t) {
  const uint3& b = tl_builtins.block_dim;
  const unsigned u = static_cast<unsigned>(t);
  return uint3{u % b.x, (u / b.x) % b.y, u / (b.x * b.y)};
}

std::string thread_name(int t) {
  const uint3 c = thread_coords(t);
  return "thread " + triple(c.x, c.y, c.z);
}

std::string block_name() {
  return std::string("kernel ") + worker().kernel + ", block " +
         triple(tl_builtins.block.x, tl_builtins.block.y, tl_builtins.block.z);
}

std::string site(const Fiber& f) { return basename_of(f.file) + ":" + std::to_string(f.line); }

void fiber_main(bctx::transfer_t tr) {
  Fiber* f = static_cast<Fiber*>(tr.data);
  f->sched = tr.fctx;
  Worker& w = worker();
#ifdef GS_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &w.sched_bottom, &w.sched_size);
#endif
  try {
    (*w.body)();
  } catch (const std::exception& e) {
    fatal(block_name() + ", " + thread_name(w.cur_thread) + " threw: " + e.what());
  } catch (...) {
    fatal(block_name() + ", " + thread_name(w.cur_thread) + " threw");
  }
  f->state = State::kDone;
#ifdef GS_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, w.sched_bottom, w.sched_size);
#endif
  bctx::jump_fcontext(f->sched, nullptr);
  fatal("a finished fiber was resumed");
}

void resume(Worker& w, int t) {
  Fiber& f = w.fibers[t];
  tl_builtins.thread = w.coords[t];
  w.cur = &f;
  w.cur_thread = t;
#ifdef GS_EMU_ASAN
  __sanitizer_start_switch_fiber(&w.sched_fake, f.stack, kStack);
#endif
  const bctx::transfer_t tr = bctx::jump_fcontext(f.self, &f);
#ifdef GS_EMU_ASAN
  __sanitizer_finish_switch_fiber(w.sched_fake, nullptr, nullptr);
#endif
  f.self = tr.fctx;
  w.cur = nullptr;
  w.cur_thread = -1;
}

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A shuffle of v (Fisher-Yates, the bound by multiplication instead of a division).
void shuffle(std::vector<int>& v, std::uint64_t& rng) {
  for (std::size_t i = v.size() - 1; i > 0 && i < v.size(); --i) {
    const auto j = static_cast<std::size_t>((static_cast<unsigned __int128>(splitmix(rng)) * (i + 1)) >> 64);
    std::swap(v[i], v[j]);
  }
}

// Frees the shared arrays of the block that ran last on this worker.
void release_shared(Worker& w) {
  for (const auto& kp : w.shared) std::free(kp.second);
  w.shared.clear();
  w.shared_bytes = 0;
}

// Runs the threads of a block without barriers one after another, each to its end.
void run_plain(Worker& w, int n, std::uint64_t& rng) {
  for (int t = 0; t < n; ++t) w.live[t] = t;
  if (config().seed != 0) shuffle(w.live, rng);
  for (int t : w.live) {
    tl_builtins.thread = w.coords[t];
    w.cur_thread = t;
    (*w.body)();
  }
  w.cur_thread = -1;
}

void run_block(const char* name, dim3 grid, dim3 block, const std::function<void()>& body, std::uint64_t launch_id,
               bool barriers, long long b) {
  Worker& w = worker();
  w.reserve();
  const int n = static_cast<int>(block.x * block.y * block.z);
  tl_builtins.block = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                            static_cast<unsigned>(b / (static_cast<long long>(grid.x) * grid.y))};
  tl_builtins.block_dim = uint3{block.x, block.y, block.z};
  tl_builtins.grid_dim = uint3{grid.x, grid.y, grid.z};
  if (w.shape.x != block.x || w.shape.y != block.y || w.shape.z != block.z) {
    w.shape = tl_builtins.block_dim;
    w.coords.resize(n);
    for (int t = 0; t < n; ++t) w.coords[t] = thread_coords(t);
  }
  w.kernel = name;
  w.body = &body;
  release_shared(w);
  w.live.resize(n);
  const std::uint64_t seed = config().seed;
  std::uint64_t rng = seed ^ (launch_id * 0xd1b54a32d192ed03ull) ^ (static_cast<std::uint64_t>(b) << 20);
  if (!barriers) {
    run_plain(w, n, rng);
    release_shared(w);
    w.kernel = nullptr;
    w.body = nullptr;
    return;
  }
  for (int t = 0; t < n; ++t) {
    Fiber& f = w.fibers[t];
#ifdef GS_EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kStack);
#endif
    f.state = State::kReady;
    f.self = bctx::make_fcontext(f.top, static_cast<std::size_t>(f.top - f.stack), &fiber_main);
    w.live[t] = t;
  }
  while (!w.live.empty()) {
    if (seed != 0) shuffle(w.live, rng);
    for (int t : w.live) resume(w, t);
    int waiting = -1, returned = -1;
    std::size_t at_barrier = 0;
    for (int t : w.live) {
      const Fiber& f = w.fibers[t];
      if (f.state == State::kDone) {
        returned = t;
        continue;
      }
      ++at_barrier;
      if (waiting < 0) waiting = t;
      else if (f.line != w.fibers[waiting].line || std::strcmp(f.file, w.fibers[waiting].file) != 0)
        fatal(block_name() + ": threads wait at different __syncthreads: " + thread_name(waiting) + " at " +
              site(w.fibers[waiting]) + ", " + thread_name(t) + " at " + site(f));
    }
    if (at_barrier == 0) break;
    if (returned >= 0)
      fatal(block_name() + ": __syncthreads at " + site(w.fibers[waiting]) +
            " is not reached by every thread of the block: " + std::to_string(at_barrier) + " of " +
            std::to_string(w.live.size()) + " threads wait there (" + thread_name(waiting) + "), " +
            thread_name(returned) + " returned");
    for (int t : w.live) w.fibers[t].state = State::kReady;
  }
  release_shared(w);
  w.kernel = nullptr;
  w.body = nullptr;
}

// Host threads that run blocks with the thread that drains the stream: run(k, fn) calls
// fn(0) here and fn(1) .. fn(k - 1) on k - 1 of them, and returns when all have returned.
class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 1; i < n; ++i) threads_.emplace_back([this, i] { loop(i); });
    for (auto& t : threads_) t.detach();  // they wait for work until the process ends
  }
  void run(int parts, const std::function<void(int)>& fn) {
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &fn;
      want_ = parts;
      active_ = parts - 1;
      ++gen_;
    }
    cv_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return active_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(int i) {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return gen_ != seen; });
      seen = gen_;
      if (i >= want_) continue;
      const std::function<void(int)>* job = job_;
      lk.unlock();
      (*job)(i);
      lk.lock();
      if (--active_ == 0) done_.notify_all();
    }
  }
  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int want_ = 0, active_ = 0;
  std::uint64_t gen_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool(config().workers);
  return *p;
}

}  // namespace

void sync_threads(const char* file, int line) {
  Worker& w = worker();
  Fiber* f = w.cur;
  if (!f && w.kernel)
    fatal(block_name() + " waits at __syncthreads (" + basename_of(file) + ":" + std::to_string(line) +
          "), but it was launched as a kernel without barriers");
  if (!f) fatal(std::string("__syncthreads outside a kernel at ") + basename_of(file) + ":" + std::to_string(line));
  f->state = State::kBarrier;
  f->file = file;
  f->line = line;
#ifdef GS_EMU_ASAN
  __sanitizer_start_switch_fiber(&f->fake, w.sched_bottom, w.sched_size);
#endif
  const bctx::transfer_t tr = bctx::jump_fcontext(f->sched, nullptr);
#ifdef GS_EMU_ASAN
  __sanitizer_finish_switch_fiber(f->fake, &w.sched_bottom, &w.sched_size);
#endif
  f->sched = tr.fctx;
}

void* shared_array(const void* key, std::size_t bytes, const char* name) {
  Worker& w = worker();
  if (!w.kernel) fatal(std::string("shared memory ") + name + " declared outside a kernel");
  for (const auto& [k, p] : w.shared)
    if (k == key) return p;
  w.shared_bytes += bytes;
  if (w.shared_bytes > kSharedPerBlock)
    fatal(block_name() + ": " + std::to_string(w.shared_bytes) +
          " bytes of static shared memory, more than the 48 KiB a block may have");
  void* p = std::malloc(bytes);
  if (!p) fatal(block_name() + ": out of host memory for the shared array " + name);
  std::memset(p, 0xff, bytes);
  w.shared.emplace_back(key, p);
  return p;
}

std::string running_kernel() {
  if (!tl_worker_ptr) return "";  // called from the fault handler: no allocation for a thread that runs no blocks
  const Worker& w = *tl_worker_ptr;
  if (!w.kernel) return "";
  return block_name() + (w.cur_thread >= 0 ? ", " + thread_name(w.cur_thread) : std::string());
}

void run_kernel(const char* name, dim3 grid, dim3 block, const std::function<void()>& body,
                std::uint64_t launch_id, bool barriers) {
  const long long blocks = static_cast<long long>(grid.x) * grid.y * grid.z;
  std::atomic<long long> next{0};
  const std::function<void(int)> work = [&](int) {
    for (long long b; (b = next.fetch_add(1)) < blocks;) run_block(name, grid, block, body, launch_id, barriers, b);
  };
  const int parts = static_cast<int>(std::min<long long>(config().workers, blocks));
  if (parts <= 1) work(0);
  else pool().run(parts, work);
}

}  // namespace gs_emu
