// Cross-entropy of teacher forcing on the generator's padded logits (see Generator.token_nll), for CPU. The
// output layer's width is padded to a multiple of 64 for the matrix kernels; this reads the first `vocab`
// columns of each row in place, so the logits are never sliced into a copy, and its backward writes the
// padded gradient directly (zeros in the padding) instead of log-softmax's output, its gradient, and a zero
// fill and copy back through the slice.
#include "vectorized.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "library.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace {

using relgan::lane_sum;
using relgan::lanes;
using relgan::row_max;
using relgan::Vec;

void check(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.stride(1) == 1,
              "cross_entropy: logits must be float32 [R, V'] with contiguous rows");
  TORCH_CHECK(vocab > 0 && vocab <= logits.size(1), "cross_entropy: vocab must be in [1, V']");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0) && targets.scalar_type() == at::kLong,
              "cross_entropy: targets must be int64 [R]");
  TORCH_CHECK(targets.numel() == 0 || (targets.min().item<int64_t>() >= 0 && targets.max().item<int64_t>() < vocab),
              "cross_entropy: targets must lie in [0, vocab)");
}

// logits [R, V'] (the first `vocab` columns count), targets [R] -> (nll [R], logsumexp [R]).
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab) {
  check(logits, targets, vocab);
  const int64_t rows = logits.size(0), stride = logits.stride(0);
  auto nll = at::empty({rows}, logits.options());
  auto lse = at::empty({rows}, logits.options());
  const float* x = logits.data_ptr<float>();
  const int64_t* target = targets.data_ptr<int64_t>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * stride;
      const float top = row_max(row, vocab);
      Vec sum_v(0.0f);
      for (int64_t j = 0; j < vocab; j += Vec::size()) {
        const int64_t w = lanes(vocab - j);
        sum_v = sum_v + Vec::set(Vec(0.0f), (Vec::loadu(row + j, w) - Vec(top)).exp(), w);
      }
      lse.data_ptr<float>()[r] = top + std::log(lane_sum(sum_v));
      nll.data_ptr<float>()[r] = lse.data_ptr<float>()[r] - row[target[r]];
    }
  });
  return {nll, lse};
}

// grad_nll [R] -> grad of logits [R, V'] = grad_nll * (softmax - one_hot(target)), zero beyond `vocab`.
at::Tensor backward(const at::Tensor& grad_nll_in, const at::Tensor& logits, const at::Tensor& lse,
                    const at::Tensor& targets, int64_t vocab) {
  check(logits, targets, vocab);
  const auto grad_nll = grad_nll_in.contiguous().to(at::kFloat);
  const int64_t rows = logits.size(0), width = logits.size(1), stride = logits.stride(0);
  auto grad = at::empty({rows, width}, logits.options());
  const float* x = logits.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * stride;
      float* out = grad.data_ptr<float>() + r * width;
      const float g = grad_nll.data_ptr<float>()[r], shift = lse.data_ptr<float>()[r];
      for (int64_t j = 0; j < vocab; j += Vec::size()) {
        const int64_t w = lanes(vocab - j);
        (Vec(g) * (Vec::loadu(row + j, w) - Vec(shift)).exp()).store(out + j, w);
      }
      std::fill(out + vocab, out + width, 0.0f);
      out[targets.data_ptr<int64_t>()[r]] -= g;
    }
  });
  return grad;
}

}  // namespace

RELGAN_LIBRARY(cross_entropy, m) {
  m.def("forward(Tensor logits, Tensor targets, int vocab) -> (Tensor, Tensor)", &forward);
  m.def("backward(Tensor grad_nll, Tensor logits, Tensor logsumexp, Tensor targets, int vocab) -> Tensor",
        &backward);
}
