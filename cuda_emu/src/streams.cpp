// Streams and events of the emulated CUDA device. Work waits in its stream until the host
// synchronizes (cudaStreamSynchronize, cudaDeviceSynchronize, cudaEventSynchronize, a
// synchronous copy, cudaFree) or until work of another stream that waits on one of its
// events runs: a GPU may run it at any time in between, so a result read without the
// synchronization the code owes is not there yet.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cuda_emu/work.h"
#include "emu.h"

struct CUstream_st {
  gs_emu::Stream* s;
};

namespace gs_emu {

struct Work {
  const char* what;
  std::function<void()> run;
};

struct Stream {
  std::deque<Work> queue;
  std::uint64_t enqueued = 0, done = 0;
  bool blocking = true;  // synchronizes with the legacy default stream
  bool legacy = false;
};

struct EventState {
  Stream* stream;
  std::uint64_t seq;  // done when stream->done reaches it
  bool done = false;
  double time = NAN;
};

}  // namespace gs_emu

struct CUevent_st {
  unsigned flags;
  std::shared_ptr<gs_emu::EventState> last;  // the latest record, null before the first
};

namespace gs_emu {
namespace {

struct Streams {
  Stream legacy;
  Stream per_thread;  // cudaStreamPerThread: one for the process, as one host thread drives it
  std::set<CUstream_st*> live;
  std::set<CUevent_st*> events;
  Streams() {
    legacy.legacy = true;
    legacy.blocking = false;
    per_thread.blocking = false;
  }
};

Streams& streams() {
  static Streams* s = new Streams;
  return *s;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void drain_to(Stream* s, std::uint64_t upto) {
  while (s->done < upto) {
    Work w = std::move(s->queue.front());
    s->queue.pop_front();
    if (sticky() == cudaSuccess) w.run();
    ++s->done;
  }
}

// The dependencies the legacy default stream adds: work on it waits for the blocking
// streams' earlier work, and work on a blocking stream waits for its earlier work.
std::vector<std::pair<Stream*, std::uint64_t>> implicit_waits(Stream* s) {
  std::vector<std::pair<Stream*, std::uint64_t>> deps;
  Streams& S = streams();
  if (s->legacy) {
    for (CUstream_st* h : S.live)
      if (h->s->blocking && h->s->enqueued > h->s->done) deps.emplace_back(h->s, h->s->enqueued);
  } else if (s->blocking && S.legacy.enqueued > S.legacy.done) {
    deps.emplace_back(&S.legacy, S.legacy.enqueued);
  }
  return deps;
}

bool timing(CUevent_st* e) { return !(e->flags & cudaEventDisableTiming); }

}  // namespace

Stream* stream_of(cudaStream_t h, cudaError_t* e) {
  Streams& S = streams();
  if (h == nullptr || h == cudaStreamLegacy) return &S.legacy;
  if (h == cudaStreamPerThread) return &S.per_thread;
  if (!S.live.count(h)) {
    *e = cudaErrorInvalidResourceHandle;
    return nullptr;
  }
  return h->s;
}

namespace {

// Work enqueued, by name (under api_mutex). With GPUSWEEP_EMU_WORK=FILE the counts are written
// to FILE when the process exits, one "count<TAB>name" line each, the most frequent first.
std::map<std::string, std::uint64_t>& counts() {
  static std::map<std::string, std::uint64_t> c;
  return c;
}

void write_counts() {
  const char* path = std::getenv("GPUSWEEP_EMU_WORK");
  if (!path || !*path) return;
  std::FILE* f = std::fopen(path, "w");
  if (!f) {
    note(std::string("GPUSWEEP_EMU_WORK: cannot write ") + path);
    return;
  }
  std::multimap<std::uint64_t, std::string, std::greater<std::uint64_t>> by_count;
  for (const auto& [name, n] : work_counts()) by_count.emplace(n, name);
  for (const auto& [n, name] : by_count) std::fprintf(f, "%llu\t%s\n", static_cast<unsigned long long>(n), name.c_str());
  std::fclose(f);
}

void count_work(const char* what) {
  Lock lock(api_mutex());
  std::map<std::string, std::uint64_t>& c = counts();  // made before write_counts is registered
  static const bool registered = std::atexit(write_counts) == 0;
  (void)registered;
  ++c[what];
}

}  // namespace

std::map<std::string, std::uint64_t> work_counts() {
  Lock lock(api_mutex());
  return counts();
}

void enqueue(Stream* s, const char* what, std::function<void()> work) {
  count_work(what);
  auto deps = implicit_waits(s);
  if (!deps.empty()) {
    work = [deps = std::move(deps), inner = std::move(work)] {
      for (const auto& [t, seq] : deps) drain_to(t, seq);
      if (sticky() == cudaSuccess) inner();
    };
  }
  s->queue.push_back(Work{what, std::move(work)});
  ++s->enqueued;
}

cudaError_t drain(Stream* s) {
  DeviceScope scope;
  drain_to(s, s->enqueued);
  return sticky();
}

cudaError_t drain_all() {
  Streams& S = streams();
  DeviceScope scope;
  drain_to(&S.legacy, S.legacy.enqueued);
  drain_to(&S.per_thread, S.per_thread.enqueued);
  for (CUstream_st* h : S.live) drain_to(h->s, h->s->enqueued);
  return sticky();
}

}  // namespace gs_emu

using namespace gs_emu;

extern "C" {

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* p, unsigned int flags) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  if (!p || (flags & ~static_cast<unsigned>(cudaStreamNonBlocking))) return fail(cudaErrorInvalidValue);
  auto* h = new CUstream_st{new Stream};
  h->s->blocking = !(flags & cudaStreamNonBlocking);
  streams().live.insert(h);
  *p = h;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* p) { return cudaStreamCreateWithFlags(p, cudaStreamDefault); }

// Work still queued runs first, as a GPU finishes it after the stream is destroyed.
cudaError_t cudaStreamDestroy(cudaStream_t h) {
  Lock lock(api_mutex());
  Streams& S = streams();
  if (h == nullptr || !S.live.count(h)) return fail(cudaErrorInvalidResourceHandle);
  {
    DeviceScope scope;
    drain_to(h->s, h->s->enqueued);
  }
  S.live.erase(h);
  delete h->s;
  delete h;
  return sticky();
}

cudaError_t cudaStreamSynchronize(cudaStream_t h) {
  Lock lock(api_mutex());
  cudaError_t e = cudaSuccess;
  Stream* s = stream_of(h, &e);
  if (!s) return fail(e);
  return drain(s);
}

cudaError_t cudaDeviceSynchronize(void) {
  Lock lock(api_mutex());
  return drain_all();
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* p, unsigned int flags) {
  Lock lock(api_mutex());
  if (cudaError_t e = ready()) return fail(e);
  const unsigned known = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
  if (!p || (flags & ~known)) return fail(cudaErrorInvalidValue);
  auto* ev = new CUevent_st{flags, nullptr};
  streams().events.insert(ev);
  *p = ev;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* p) { return cudaEventCreateWithFlags(p, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t ev) {
  Lock lock(api_mutex());
  if (!streams().events.erase(ev)) return fail(cudaErrorInvalidResourceHandle);
  delete ev;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t h) {
  Lock lock(api_mutex());
  if (cudaError_t e = sticky()) return fail(e);
  if (!streams().events.count(ev)) return fail(cudaErrorInvalidResourceHandle);
  cudaError_t e = cudaSuccess;
  Stream* s = stream_of(h, &e);
  if (!s) return fail(e);
  auto st = std::make_shared<EventState>();
  st->stream = s;
  enqueue(s, "cudaEventRecord", [st] {
    st->time = now();
    st->done = true;
  });
  st->seq = s->enqueued;
  ev->last = st;
  return cudaSuccess;
}

// The wait is on the event's latest record at the time of this call, as in CUDA; an event
// never recorded makes it a no-op.
cudaError_t cudaStreamWaitEvent(cudaStream_t h, cudaEvent_t ev, unsigned int flags) {
  Lock lock(api_mutex());
  if (cudaError_t e = sticky()) return fail(e);
  if (!streams().events.count(ev)) return fail(cudaErrorInvalidResourceHandle);
  if (flags != 0 && flags != cudaEventWaitExternal) return fail(cudaErrorInvalidValue);
  cudaError_t e = cudaSuccess;
  Stream* s = stream_of(h, &e);
  if (!s) return fail(e);
  if (!ev->last) return cudaSuccess;
  std::shared_ptr<EventState> st = ev->last;
  enqueue(s, "cudaStreamWaitEvent", [st] {
    if (!st->done) drain_to(st->stream, st->seq);
  });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
  Lock lock(api_mutex());
  if (!streams().events.count(ev)) return fail(cudaErrorInvalidResourceHandle);
  if (ev->last && !ev->last->done) {
    DeviceScope scope;
    drain_to(ev->last->stream, ev->last->seq);
  }
  return sticky();
}

// Both events must have completed: the host synchronizes first, as on a GPU (cudaErrorNotReady
// otherwise). The time is the host's between the two records' execution.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  Lock lock(api_mutex());
  if (cudaError_t e = sticky()) return e;
  Streams& S = streams();
  if (!ms || !S.events.count(a) || !S.events.count(b)) return fail(cudaErrorInvalidValue);
  if (!timing(a) || !timing(b) || !a->last || !b->last) return fail(cudaErrorInvalidResourceHandle);
  if (!a->last->done || !b->last->done) return fail(cudaErrorNotReady);
  *ms = static_cast<float>((b->last->time - a->last->time) * 1e3);
  return cudaSuccess;
}

}  // extern "C"
