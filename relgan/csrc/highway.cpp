// The discriminator's highway gating and the dropout after it, for CPU (see relgan/models/highway.py): one pass
// over [N, W] forward and one backward instead of PyTorch's several element-wise passes each way, and the
// gradient of both branches' pre-activations written into one [N, 2W] buffer (no concatenation of two halves).
#include "vectorized.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

namespace {

using relgan::lanes;
using relgan::sigmoid;
using relgan::Vec;

constexpr int64_t kRowsPerTask = 16;

void check_inputs(const at::Tensor& features, const at::Tensor& both, const std::optional<at::Tensor>& bits) {
  TORCH_CHECK(features.dim() == 2 && both.dim() == 2 && both.size(0) == features.size(0) &&
                  both.size(1) == 2 * features.size(1),
              "highway: features [N, W] and both branches [N, 2W]");
  TORCH_CHECK(features.scalar_type() == at::kFloat && both.scalar_type() == at::kFloat, "highway: float32 inputs");
  TORCH_CHECK(!bits || (bits->scalar_type() == at::kShort && bits->sizes() == features.sizes()),
              "highway: dropout bits must be int16 [N, W]");
}

// The dropout factor of each element of a row: scale where bits >= threshold, else 0 (all 1 without bits).
void dropout_factors(const int16_t* bits, int64_t threshold, float scale, int64_t width, float* factors) {
  for (int64_t c = 0; c < width; ++c) factors[c] = bits == nullptr ? 1.0f : (bits[c] >= threshold ? scale : 0.0f);
}

// features [N, W], both [N, 2W] = (gate | transform) pre-activations, dropout bits [N, W] or none ->
// (f + sigmoid(gate) * (relu(transform) - f)) * dropout factor
at::Tensor highway_forward(const at::Tensor& features_in, const at::Tensor& both_in,
                           const std::optional<at::Tensor>& bits_in, int64_t threshold, double scale) {
  check_inputs(features_in, both_in, bits_in);
  const auto features = features_in.contiguous();
  const auto both = both_in.contiguous();
  const int64_t rows = features.size(0), width = features.size(1);
  const auto bits = bits_in ? std::optional<at::Tensor>(bits_in->contiguous()) : std::nullopt;
  auto out = at::empty_like(features);
  const float* f = features.data_ptr<float>();
  const float* gt = both.data_ptr<float>();
  const int16_t* b = bits ? bits->data_ptr<int16_t>() : nullptr;
  float* o = out.data_ptr<float>();
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> factors(width);
    for (int64_t r = begin; r < end; ++r) {
      dropout_factors(b ? b + r * width : nullptr, threshold, static_cast<float>(scale), width, factors.data());
      for (int64_t c = 0; c < width; c += Vec::size()) {
        const int64_t n = lanes(width - c);
        const Vec x = Vec::loadu(f + r * width + c, n);
        const Vec gate = sigmoid(Vec::loadu(gt + r * 2 * width + c, n));
        const Vec transform = at::vec::maximum(Vec::loadu(gt + r * 2 * width + width + c, n), Vec(0.0f));
        ((x + gate * (transform - x)) * Vec::loadu(factors.data() + c, n)).store(o + r * width + c, n);
      }
    }
  });
  return out;
}

// grad [N, W] of the output -> (grad of features [N, W] through the gating alone, grad of both [N, 2W])
std::tuple<at::Tensor, at::Tensor> highway_backward(const at::Tensor& grad_in, const at::Tensor& features_in,
                                                    const at::Tensor& both_in, const std::optional<at::Tensor>& bits_in,
                                                    int64_t threshold, double scale) {
  check_inputs(features_in, both_in, bits_in);
  const auto grad = grad_in.contiguous().to(at::kFloat);
  const auto features = features_in.contiguous();
  const auto both = both_in.contiguous();
  const int64_t rows = features.size(0), width = features.size(1);
  const auto bits = bits_in ? std::optional<at::Tensor>(bits_in->contiguous()) : std::nullopt;
  auto grad_features = at::empty_like(features);
  auto grad_both = at::empty_like(both);
  const float* g = grad.data_ptr<float>();
  const float* f = features.data_ptr<float>();
  const float* gt = both.data_ptr<float>();
  const int16_t* b = bits ? bits->data_ptr<int16_t>() : nullptr;
  float* gf = grad_features.data_ptr<float>();
  float* gb = grad_both.data_ptr<float>();
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> factors(width);
    for (int64_t r = begin; r < end; ++r) {
      dropout_factors(b ? b + r * width : nullptr, threshold, static_cast<float>(scale), width, factors.data());
      for (int64_t c = 0; c < width; c += Vec::size()) {
        const int64_t n = lanes(width - c);
        const Vec go = Vec::loadu(g + r * width + c, n) * Vec::loadu(factors.data() + c, n);
        const Vec x = Vec::loadu(f + r * width + c, n);
        const Vec gate = sigmoid(Vec::loadu(gt + r * 2 * width + c, n));
        const Vec pre_transform = Vec::loadu(gt + r * 2 * width + width + c, n);
        const Vec transform = at::vec::maximum(pre_transform, Vec(0.0f));
        (go * (Vec(1.0f) - gate)).store(gf + r * width + c, n);
        (go * (transform - x) * gate * (Vec(1.0f) - gate)).store(gb + r * 2 * width + c, n);
        const Vec d_transform = go * gate;
        Vec::blendv(Vec(0.0f), d_transform, pre_transform > Vec(0.0f)).store(gb + r * 2 * width + width + c, n);
      }
    }
  });
  return {grad_features, grad_both};
}

}  // namespace

TORCH_LIBRARY(relgan_highway, m) {
  m.def("forward(Tensor features, Tensor both, Tensor? bits, int threshold, float scale) -> Tensor", &highway_forward);
  m.def("backward(Tensor grad, Tensor features, Tensor both, Tensor? bits, int threshold, float scale) -> "
        "(Tensor, Tensor)",
        &highway_backward);
}
