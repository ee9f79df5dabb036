// ATen's vector type compiled for the instruction set the build targets (relgan/fast/build.py: baseline x86-64,
// AVX2 or AVX-512), shared by the kernels that use SLEEF's exp, log and tanh.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#else
#define CPU_CAPABILITY DEFAULT
#endif

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace relgan {

using Vec = at::vec::Vectorized<float>;

// The sum of a vector's lanes, in lane order.
inline float lane_sum(const Vec& v) {
  float lanes[Vec::size()];
  v.store(lanes);
  float sum = 0.0f;
  for (int64_t k = 0; k < Vec::size(); ++k) sum += lanes[k];
  return sum;
}

// Maximum of a row; NaN propagates (a NaN row's softmax is NaN).
inline float row_max(const float* x, int64_t length) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  if (length >= Vec::size()) {
    Vec best_v(best);
    for (; j + Vec::size() <= length; j += Vec::size()) best_v = at::vec::maximum(best_v, Vec::loadu(x + j));
    float lanes[Vec::size()];
    best_v.store(lanes);
    for (int64_t k = 0; k < Vec::size(); ++k) best = std::isnan(lanes[k]) ? lanes[k] : std::max(best, lanes[k]);
  }
  for (; j < length; ++j) best = std::isnan(x[j]) ? x[j] : std::max(best, x[j]);
  return best;
}

inline Vec sigmoid(const Vec& x) { return Vec(1.0f) / (Vec(1.0f) + (Vec(0.0f) - x).exp()); }

// Element-wise loops go over a row in vectors, the last one partial: lanes(n - j) values from column j
// (partial loads fill the rest with zeros, partial stores write only those values).
inline int64_t lanes(int64_t remaining) { return std::min<int64_t>(Vec::size(), remaining); }

}  // namespace relgan
