// thrust::counting_iterator for the emulated CUDA device (cuda_emu): the random-access
// iterator over consecutive integers that thrust::for_each walks.
#pragma once

#include <cstddef>
#include <iterator>

namespace thrust {

template <class T>
class counting_iterator {
 public:
  using iterator_category = std::random_access_iterator_tag;
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  using pointer = const T*;
  using reference = T;

  counting_iterator() = default;
  explicit counting_iterator(T v) : v_(v) {}
  T operator*() const { return v_; }
  T operator[](difference_type n) const { return v_ + static_cast<T>(n); }
  counting_iterator& operator++() { return ++v_, *this; }
  counting_iterator operator+(difference_type n) const { return counting_iterator(v_ + static_cast<T>(n)); }
  difference_type operator-(const counting_iterator& o) const { return static_cast<difference_type>(v_ - o.v_); }
  bool operator==(const counting_iterator& o) const { return v_ == o.v_; }
  bool operator!=(const counting_iterator& o) const { return v_ != o.v_; }

 private:
  T v_{};
};

template <class T>
counting_iterator<T> make_counting_iterator(T v) {
  return counting_iterator<T>(v);
}

}  // namespace thrust
