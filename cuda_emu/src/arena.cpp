// Device memory of the emulated CUDA device: one reserved range of the address space, an
// allocation per span of pages with a guard page on each side, NaN fill, accounting against
// the emulated memory size, protection from the host outside device work, and the fault
// handler that names what a faulting address is.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>

#include "emu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define GS_EMU_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define GS_EMU_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define GS_EMU_POISON(p, n) ((void)(p), (void)(n))
#define GS_EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace gs_emu {
namespace {

constexpr std::size_t kReserve = std::size_t(1) << 40;  // address space, not memory
constexpr std::size_t kAlign = 256;                      // cudaMalloc's alignment

struct Alloc {
  char* span;       // guard page, data pages, guard page
  std::size_t len;  // of the span
  char* data;       // the pointer cudaMalloc returned: its end as close to the last data page's end as alignment allows
  std::size_t size;
  bool live;
  int open;  // data pages accessible (set atomically: fault handlers on several threads open them)
};

// Inside a DeviceScope, device memory opens an allocation at a time, on the first fault in
// it, and only the allocations opened are closed again when the scope ends: the work of a
// scope touches a few of them, and each mprotect costs in proportion to the pages it covers.
constexpr int kMaxOpen = 1 << 14;

struct Arena {
  char* base = nullptr;
  std::size_t page = 4096;
  std::size_t bump = 0;  // next unused offset
  std::size_t used = 0;  // bytes charged against the memory size
  std::map<std::uintptr_t, Alloc> spans;  // by span start; freed ones stay to name later faults
  int scope_depth = 0;
  int in_scope = 0;  // read by the fault handler
  Alloc* opened[kMaxOpen];
  int n_opened = 0;  // atomic
  int open_all = 0;  // more opened than the list holds: close every live allocation
  struct sigaction old_segv {};
};

Arena& arena();

std::size_t round_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }
std::size_t charged(std::size_t size) { return round_up(size, kAlign); }
char* first_data_page(const Alloc& a, std::size_t page) { return a.span + page; }
std::size_t data_pages(const Alloc& a, std::size_t page) { return a.len - 2 * page; }

// The allocation whose span holds p, or null.
const Alloc* find(const void* p) {
  Arena& A = arena();
  const auto u = reinterpret_cast<std::uintptr_t>(p);
  auto it = A.spans.upper_bound(u);
  if (it == A.spans.begin()) return nullptr;
  --it;
  const Alloc& a = it->second;
  return u < reinterpret_cast<std::uintptr_t>(a.span) + a.len ? &a : nullptr;
}

void set_access(const Alloc& a, bool on) {
  const std::size_t page = arena().page;
  if (mprotect(first_data_page(a, page), data_pages(a, page), on ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
    fatal(std::string("mprotect of device memory failed: ") + std::strerror(errno));
}

// Opens a's data pages for the scope that runs (from the fault handler: no allocation, no lock).
void open_in_scope(Alloc* a) {
  if (__atomic_exchange_n(&a->open, 1, __ATOMIC_ACQ_REL)) return;
  mprotect(first_data_page(*a, arena().page), data_pages(*a, arena().page), PROT_READ | PROT_WRITE);
  Arena& A = arena();
  const int k = __atomic_fetch_add(&A.n_opened, 1, __ATOMIC_ACQ_REL);
  if (k < kMaxOpen) A.opened[k] = a;
  else __atomic_store_n(&A.open_all, 1, __ATOMIC_RELEASE);
}

void segv_handler(int sig, siginfo_t* info, void* uctx) {
  Arena& A = arena();
  const char* addr = static_cast<const char*>(info->si_addr);
  if (A.base && addr >= A.base && addr < A.base + kReserve) {
    // Device work touching a closed allocation: open it (or let the thread that opens it
    // finish) and go on.
    if (__atomic_load_n(&A.in_scope, __ATOMIC_ACQUIRE)) {
      Alloc* a = const_cast<Alloc*>(find(addr));
      if (a && a->live && addr >= first_data_page(*a, A.page) &&
          addr < first_data_page(*a, A.page) + data_pages(*a, A.page)) {
        open_in_scope(a);
        return;
      }
    }
    std::string what = running_kernel();
    const Alloc* a = find(addr);
    std::string msg;
    if (!what.empty()) {
      msg = what + ": illegal address " + describe(addr);
    } else if (a && a->live && addr >= a->data && addr < a->data + a->size) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "the host touched device memory at %p (byte %zu of an allocation of %zu bytes); ",
                    static_cast<const void*>(addr), static_cast<std::size_t>(addr - a->data), a->size);
      msg = std::string(buf) + "device memory is read and written by cudaMemcpy";
    } else {
      msg = "the host touched " + describe(addr);
    }
    const std::string line = "cuda_emu: " + msg + "\n";
    if (write(2, line.data(), line.size()) < 0) {
    }
  }
  // The previous handler (AddressSanitizer's, or the default one) takes the fault again.
  sigaction(SIGSEGV, &A.old_segv, nullptr);
  (void)sig;
  (void)uctx;
}

Arena& arena() {
  static Arena* a = [] {
    auto* ar = new Arena;
    ar->page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal(std::string("cannot reserve the device address range: ") + std::strerror(errno));
    ar->base = static_cast<char*>(p);
    struct sigaction sa {};
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &ar->old_segv);
    return ar;
  }();
  return *a;
}

// A span of `len` bytes: fresh address space while the reservation lasts, then the first
// freed span that is large enough (one freed long enough ago to have left the quarantine).
char* take_span(std::size_t len) {
  Arena& A = arena();
  if (A.bump + len <= kReserve) {
    char* s = A.base + A.bump;
    A.bump += len;
    return s;
  }
  for (auto it = A.spans.begin(); it != A.spans.end(); ++it)
    if (!it->second.live && it->second.len >= len) {
      char* s = it->second.span;
      const std::size_t rest = it->second.len - len;
      A.spans.erase(it);
      if (rest > 0) A.spans[reinterpret_cast<std::uintptr_t>(s + len)] = Alloc{s + len, rest, s + len, 0, false, 0};
      return s;
    }
  return nullptr;
}

}  // namespace

cudaError_t dev_malloc(void** p, std::size_t size) {
  Arena& A = arena();
  if (size == 0) {
    *p = nullptr;
    return cudaSuccess;
  }
  if (size > config().memory || A.used + charged(size) > config().memory) return cudaErrorMemoryAllocation;
  const std::size_t page = A.page;
  const std::size_t pages = round_up(size, page);
  const std::size_t len = pages + 2 * page;
  char* span = take_span(len);
  if (!span) return cudaErrorMemoryAllocation;
  Alloc a{span, len, span + page + pages - round_up(size, kAlign), size, true, 1};
  A.spans[reinterpret_cast<std::uintptr_t>(span)] = a;
  A.used += charged(size);
  set_access(a, true);
  std::memset(a.data, 0xff, size);
  GS_EMU_POISON(span + page, static_cast<std::size_t>(a.data - (span + page)));
  GS_EMU_UNPOISON(a.data, size);
  GS_EMU_POISON(a.data + size, static_cast<std::size_t>(span + page + pages - (a.data + size)));
  if (config().protect) {
    set_access(a, false);
    A.spans[reinterpret_cast<std::uintptr_t>(span)].open = 0;
  }
  *p = a.data;
  return cudaSuccess;
}

cudaError_t dev_free(void* p) {
  Arena& A = arena();
  if (!p) return cudaSuccess;
  auto it = A.spans.end();
  if (const Alloc* a = find(p)) it = A.spans.find(reinterpret_cast<std::uintptr_t>(a->span));
  if (it == A.spans.end() || !it->second.live || it->second.data != p) return cudaErrorInvalidValue;
  Alloc& a = it->second;
  const std::size_t page = A.page;
  GS_EMU_POISON(first_data_page(a, page), data_pages(a, page));
  madvise(first_data_page(a, page), data_pages(a, page), MADV_DONTNEED);
  set_access(a, false);
  a.live = false;
  a.open = 0;
  A.used -= charged(a.size);
  return cudaSuccess;
}

std::size_t dev_used() { return arena().used; }

bool is_device(const void* p, std::size_t bytes) {
  const Alloc* a = find(p);
  if (!a || !a->live) return false;
  const char* c = static_cast<const char*>(p);
  return c >= a->data && c + bytes <= a->data + a->size && (bytes > 0 || c <= a->data + a->size);
}

bool in_arena(const void* p) {
  Arena& A = arena();
  const char* c = static_cast<const char*>(p);
  return c >= A.base && c < A.base + kReserve;
}

std::string describe(const void* p) {
  char buf[240];
  const char* c = static_cast<const char*>(p);
  const Alloc* a = find(p);
  if (!in_arena(p)) {
    std::snprintf(buf, sizeof buf, "%p, which is not device memory (a host address)", p);
  } else if (!a || a->size == 0) {
    std::snprintf(buf, sizeof buf, "%p, in no device allocation", p);
  } else if (!a->live) {
    std::snprintf(buf, sizeof buf, "%p, in device memory freed earlier (an allocation of %zu bytes at %p)", p, a->size,
                  static_cast<const void*>(a->data));
  } else if (c < a->data) {
    std::snprintf(buf, sizeof buf, "%p, %zu bytes before the device allocation of %zu bytes at %p", p,
                  static_cast<std::size_t>(a->data - c), a->size, static_cast<const void*>(a->data));
  } else if (c >= a->data + a->size) {
    std::snprintf(buf, sizeof buf, "%p, %zu bytes past the end of the device allocation of %zu bytes at %p", p,
                  static_cast<std::size_t>(c - (a->data + a->size)), a->size, static_cast<const void*>(a->data));
  } else {
    std::snprintf(buf, sizeof buf, "%p, byte %zu of the device allocation of %zu bytes at %p", p,
                  static_cast<std::size_t>(c - a->data), a->size, static_cast<const void*>(a->data));
  }
  return buf;
}

DeviceScope::DeviceScope() {
  Arena& A = arena();
  if (A.scope_depth++ == 0 && config().protect) __atomic_store_n(&A.in_scope, 1, __ATOMIC_RELEASE);
}

DeviceScope::~DeviceScope() {
  Arena& A = arena();
  if (--A.scope_depth != 0 || !config().protect) return;
  __atomic_store_n(&A.in_scope, 0, __ATOMIC_RELEASE);
  if (A.open_all) {
    for (auto& [at, a] : A.spans)
      if (a.live && a.open) set_access(a, false), a.open = 0;
  } else {
    for (int k = 0; k < A.n_opened; ++k) set_access(*A.opened[k], false), A.opened[k]->open = 0;
  }
  A.n_opened = 0;
  A.open_all = 0;
}

}  // namespace gs_emu
