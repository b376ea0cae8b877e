// thrust::device_vector for the emulated CUDA device (cuda_emu): device memory from
// cudaMalloc, filled and copied on the legacy default stream, each operation complete when
// it returns, as Thrust's are. The members gpu-sweep uses: construction from a size (value
// initialized), a size and a value, or a host range; assign, clear, shrink_to_fit, size and
// data, and thrust::raw_pointer_cast.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <iterator>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "cuda_emu/kernel.h"
#include "thrust/execution_policy.h"

namespace thrust {

namespace system {
namespace detail {
// Thrust's exception when device memory runs out.
class bad_alloc : public std::bad_alloc {
 public:
  explicit bad_alloc(const char* why) : what_(std::string("std::bad_alloc: ") + why) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};
}  // namespace detail
}  // namespace system

template <class T>
class device_ptr {
 public:
  explicit device_ptr(T* p) : p_(p) {}
  T* get() const { return p_; }

 private:
  T* p_;
};

template <class T>
T* raw_pointer_cast(device_ptr<T> p) {
  return p.get();
}
template <class T>
T* raw_pointer_cast(T* p) {
  return p;
}

namespace cuda_emu_detail {

template <class T>
void fill_kernel(T* p, long long n, T v) {
  const long long i = static_cast<long long>(gs_emu::tl_builtins.block.x) * gs_emu::tl_builtins.block_dim.x +
                      gs_emu::tl_builtins.thread.x;
  if (i < n) p[i] = v;
}

inline void check(cudaError_t e, const char* what) {
  if (e == cudaErrorMemoryAllocation) throw system::detail::bad_alloc("cudaErrorMemoryAllocation: out of memory");
  if (e != cudaSuccess) throw system_error(e, what);
}

}  // namespace cuda_emu_detail

template <class T>
class device_vector {
 public:
  using value_type = T;
  using size_type = std::size_t;

  device_vector() = default;
  explicit device_vector(size_type n) { fill(n, T()); }
  device_vector(size_type n, const T& v) { fill(n, v); }
  template <class It, class = typename std::iterator_traits<It>::iterator_category>
  device_vector(It first, It last) {
    assign(first, last);
  }
  device_vector(const device_vector&) = delete;
  device_vector& operator=(const device_vector&) = delete;
  device_vector(device_vector&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)),
                                              cap_(std::exchange(o.cap_, 0)) {}
  device_vector& operator=(device_vector&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      cap_ = std::exchange(o.cap_, 0);
    }
    return *this;
  }
  ~device_vector() { release(); }

  template <class It>
  void assign(It first, It last) {
    const std::vector<T> host(first, last);
    allocate(host.size());
    if (!host.empty())
      cuda_emu_detail::check(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                             "device_vector: copy from the host");
  }
  size_type size() const { return n_; }
  bool empty() const { return n_ == 0; }
  device_ptr<T> data() { return device_ptr<T>(p_); }
  device_ptr<const T> data() const { return device_ptr<const T>(p_); }
  void clear() { n_ = 0; }
  void shrink_to_fit() {
    if (cap_ == n_) return;
    if (n_ != 0) throw system_error(cudaErrorNotSupported, "device_vector::shrink_to_fit of a non-empty vector");
    release();
  }

 private:
  void allocate(size_type n) {
    if (n <= cap_) {
      n_ = n;
      return;
    }
    release();
    void* p = nullptr;
    cuda_emu_detail::check(cudaMalloc(&p, n * sizeof(T)), "device_vector: allocate");
    p_ = static_cast<T*>(p);
    n_ = cap_ = n;
  }
  void fill(size_type n, const T& v) {
    allocate(n);
    if (n == 0) return;
    constexpr unsigned kThreads = 256;
    const auto blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
    gs_emu::launch_without_barriers("thrust::uninitialized_fill", &cuda_emu_detail::fill_kernel<T>, dim3(blocks), dim3(kThreads), 0,
                   nullptr)(p_, static_cast<long long>(n), v);
    cuda_emu_detail::check(cudaPeekAtLastError(), "device_vector: fill");
    cuda_emu_detail::check(cudaStreamSynchronize(nullptr), "device_vector: fill");
  }
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = cap_ = 0;
  }

  T* p_ = nullptr;
  size_type n_ = 0, cap_ = 0;
};

}  // namespace thrust
