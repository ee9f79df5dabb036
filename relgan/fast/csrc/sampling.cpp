// Fused CPU sampling kernels (see relgan/fast/gumbel.py; the reference is relgan/gumbel.py): one pass over each
// row of logits instead of the PyTorch path's tensor-wide passes (uniforms, two logs, add, argmax, scale,
// softmax; or softmax, cumsum, search). exp and log come from ATen's vector types (SLEEF, 1-ulp), compiled for
// the instruction set of the build; the Gumbel noise from SplitMix64 applied to a counter, so every value depends on (seed,
// row, column) alone, not on the number of threads.
#include "vectorized.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "library.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using relgan::Vec;
using relgan::lane_sum;
using relgan::row_max;

// The i-th output of SplitMix64 seeded with `seed` (Steele, Lea & Flood 2014): a Weyl sequence through a
// bijective mixer, which passes BigCrush.
inline uint64_t splitmix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniforms on the open interval (0, 1), 23 bits each, for the `count` elements of one row: element p takes the
// high bits of the stream's output first + p and element half + p its low bits (half = ceil(count / 2)), so
// both loops vectorise. u = (k + 1/2) / 2^23 is exact in float32 (24 significant bits) and lies in
// [2^-24, 1 - 2^-24]: -log(-log(u)) is finite. (With 24 bits, (2^24 - 1/2) / 2^24 would round to 1.)
inline void open_uniforms(uint64_t seed, uint64_t first, int64_t count, uint64_t* words, float* out) {
  constexpr float scale = 1.0f / 8388608.0f;
  const int64_t half = (count + 1) / 2;
  for (int64_t p = 0; p < half; ++p) words[p] = splitmix64(seed, first + p);
  for (int64_t p = 0; p < half; ++p) out[p] = (static_cast<float>(words[p] >> 41) + 0.5f) * scale;
  for (int64_t p = 0; p < count - half; ++p)
    out[half + p] = (static_cast<float>((words[p] >> 9) & 0x7FFFFF) + 0.5f) * scale;
}

// Standard Gumbel noise -log(-log(u)) for one row: out[j] = noise of element (row, j) of the stream `seed`.
// `u` and `words` are scratch rows of `length` floats and (length + 1) / 2 words.
inline void gumbel_row(uint64_t seed, int64_t row, int64_t length, uint64_t* words, float* u, float* out) {
  const uint64_t half = static_cast<uint64_t>((length + 1) / 2);
  open_uniforms(seed, static_cast<uint64_t>(row) * half, length, words, u);
  int64_t j = 0;
  for (; j + Vec::size() <= length; j += Vec::size())
    (Vec(0.0f) - (Vec(0.0f) - Vec::loadu(u + j).log()).log()).store(out + j);
  const int64_t rest = length - j;
  if (rest > 0) (Vec(0.0f) - (Vec(0.0f) - Vec::loadu(u + j, rest).log()).log()).store(out + j, rest);
}

// First index of `value` in a row (0 if absent, as for a NaN maximum).
inline int64_t first_index_of(const float* x, int64_t length, float value) {
  int64_t j = 0;
  for (; j + Vec::size() <= length; j += Vec::size()) {
    const int equal = ~(Vec::loadu(x + j) == Vec(value)).zero_mask() & ((1 << Vec::size()) - 1);
    if (equal != 0) return j + __builtin_ctz(equal);
  }
  for (; j < length; ++j)
    if (x[j] == value) return j;
  return 0;
}

// dst = exp(scale * (src - shift)), returns the sum of dst (lanes summed in a fixed order).
inline float scaled_exp(const float* src, float* dst, int64_t length, float scale, float shift) {
  Vec sum_v(0.0f);
  int64_t j = 0;
  for (; j + Vec::size() <= length; j += Vec::size()) {
    const Vec e = ((Vec::loadu(src + j) - Vec(shift)) * Vec(scale)).exp();
    e.store(dst + j);
    sum_v = sum_v + e;
  }
  const int64_t rest = length - j;
  if (rest > 0) {
    const Vec e = ((Vec::loadu(src + j, rest) - Vec(shift)) * Vec(scale)).exp();
    e.store(dst + j, rest);
    sum_v = sum_v + Vec::set(Vec(0.0f), e, rest);
  }
  return lane_sum(sum_v);
}

// logits [R, V] (rows may be strided) -> tokens [R] = argmax(o + g), relaxed [R, V] = softmax(beta * (o + g))
// with g standard Gumbel noise from (seed, row, column); perturbed [R, V] = o + g when asked for (the
// gradient of beta needs it).
std::tuple<at::Tensor, at::Tensor, at::Tensor> gumbel_softmax(const at::Tensor& logits, double beta, int64_t seed,
                                                              bool keep_perturbed) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.stride(1) == 1,
              "gumbel_softmax: logits must be float32 [R, V] with contiguous rows");
  const int64_t rows = logits.size(0), length = logits.size(1), stride = logits.stride(0);
  auto tokens = at::empty({rows}, logits.options().dtype(at::kLong));
  auto relaxed = at::empty({rows, length}, logits.options());
  auto perturbed = keep_perturbed ? at::empty({rows, length}, logits.options()) : at::empty({0}, logits.options());
  const float* o = logits.data_ptr<float>();
  float* y = relaxed.data_ptr<float>();
  float* z_all = keep_perturbed ? perturbed.data_ptr<float>() : nullptr;
  int64_t* tok = tokens.data_ptr<int64_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> u(length);
    std::vector<uint64_t> words((length + 1) / 2);
    for (int64_t r = begin; r < end; ++r) {
      const float* o_r = o + r * stride;
      float* y_r = y + r * length;
      float* z = z_all != nullptr ? z_all + r * length : y_r;  // o + g, in place of y unless kept
      gumbel_row(key, r, length, words.data(), u.data(), z);
      int64_t j = 0;
      for (; j + Vec::size() <= length; j += Vec::size()) (Vec::loadu(z + j) + Vec::loadu(o_r + j)).store(z + j);
      for (; j < length; ++j) z[j] += o_r[j];
      const float top = row_max(z, length);
      tok[r] = first_index_of(z, length, top);
      const float inv_sum = 1.0f / scaled_exp(z, y_r, length, static_cast<float>(beta), top);
      j = 0;
      for (; j + Vec::size() <= length; j += Vec::size()) (Vec::loadu(y_r + j) * Vec(inv_sum)).store(y_r + j);
      for (; j < length; ++j) y_r[j] *= inv_sum;
    }
  });
  return {tokens, relaxed, perturbed};
}

// [R, V] of the noise that gumbel_softmax adds for the same seed.
at::Tensor gumbel_noise(int64_t rows, int64_t length, int64_t seed) {
  auto noise = at::empty({rows, length}, at::TensorOptions().dtype(at::kFloat));
  float* out = noise.data_ptr<float>();
  at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> u(length);
    std::vector<uint64_t> words((length + 1) / 2);
    for (int64_t r = begin; r < end; ++r)
      gumbel_row(static_cast<uint64_t>(seed), r, length, words.data(), u.data(), out + r * length);
  });
  return noise;
}

// Backward of relaxed = softmax(beta * z) with respect to z: beta * y * (grad - sum(grad * y)), row by row.
at::Tensor gumbel_softmax_backward(const at::Tensor& grad, const at::Tensor& relaxed, double beta) {
  const auto g = grad.contiguous();
  const int64_t rows = relaxed.size(0), length = relaxed.size(1);
  auto out = at::empty_like(relaxed);
  const float* gp = g.data_ptr<float>();
  const float* yp = relaxed.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* g_r = gp + r * length;
      const float* y_r = yp + r * length;
      float* o_r = op + r * length;
      Vec dot_v(0.0f);
      int64_t j = 0;
      for (; j + Vec::size() <= length; j += Vec::size())
        dot_v = dot_v + Vec::loadu(g_r + j) * Vec::loadu(y_r + j);
      float dot = lane_sum(dot_v);
      for (; j < length; ++j) dot += g_r[j] * y_r[j];
      const float b = static_cast<float>(beta);
      j = 0;
      for (; j + Vec::size() <= length; j += Vec::size())
        (Vec(b) * Vec::loadu(y_r + j) * (Vec::loadu(g_r + j) - Vec(dot))).store(o_r + j);
      for (; j < length; ++j) o_r[j] = b * y_r[j] * (g_r[j] - dot);
    }
  });
  return out;
}

// logits [R, V] (rows may be strided), u [R] uniform in [0, 1) -> tokens [R] drawn from softmax(logits * scale)
// by inversion: the first index whose running sum of exp(scale * (o - max)) exceeds u times the total. Sums
// run per block of kBlock elements; the block totals are added in one fixed order for both the total and the
// search, so the search ends inside the row, on a token of nonzero probability.
at::Tensor categorical_by_inversion(const at::Tensor& logits, const at::Tensor& u, double scale) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.stride(1) == 1,
              "categorical_by_inversion: logits must be float32 [R, V] with contiguous rows");
  TORCH_CHECK(u.dim() == 1 && u.size(0) == logits.size(0) && u.scalar_type() == at::kFloat,
              "categorical_by_inversion: u must be float32 [R]");
  constexpr int64_t kBlock = 8 * Vec::size();
  const int64_t rows = logits.size(0), length = logits.size(1), stride = logits.stride(0);
  const int64_t blocks = (length + kBlock - 1) / kBlock;
  auto tokens = at::empty({rows}, logits.options().dtype(at::kLong));
  const auto uc = u.contiguous();
  const float* o = logits.data_ptr<float>();
  const float* up = uc.data_ptr<float>();
  int64_t* tok = tokens.data_ptr<int64_t>();
  at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> e(length), block_sums(blocks);
    for (int64_t r = begin; r < end; ++r) {
      const float* o_r = o + r * stride;
      const float top = row_max(o_r, length);
      float total = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t first = b * kBlock, count = std::min(kBlock, length - first);
        block_sums[b] = scaled_exp(o_r + first, e.data() + first, count, static_cast<float>(scale), top);
        total += block_sums[b];
      }
      const float target = up[r] * total;
      float running = 0.0f;
      int64_t b = 0;
      while (b < blocks - 1 && running + block_sums[b] <= target) running += block_sums[b++];
      int64_t pick = -1;
      for (int64_t j = b * kBlock; j < std::min(length, (b + 1) * kBlock); ++j) {
        if (e[j] > 0.0f) pick = j;
        running += e[j];
        if (running > target && e[j] > 0.0f) break;
      }
      // u * total rounded up to the total: the last token of nonzero probability
      for (int64_t j = length - 1; pick < 0 && j >= 0; --j)
        if (e[j] > 0.0f) pick = j;
      tok[r] = std::max<int64_t>(pick, 0);
    }
  });
  return tokens;
}

}  // namespace

RELGAN_LIBRARY(sampling, m) {
  m.def("gumbel_softmax(Tensor logits, float beta, int seed, bool keep_perturbed) -> (Tensor, Tensor, Tensor)",
        &gumbel_softmax);
  m.def("gumbel_noise(int rows, int length, int seed) -> Tensor", &gumbel_noise);
  m.def("gumbel_softmax_backward(Tensor grad, Tensor relaxed, float beta) -> Tensor", &gumbel_softmax_backward);
  m.def("categorical_by_inversion(Tensor logits, Tensor u, float scale) -> Tensor", &categorical_by_inversion);
}
