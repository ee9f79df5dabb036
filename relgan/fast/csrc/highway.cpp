// The discriminator's highway gating and the dropout after it, for CPU (see relgan/fast/discriminator.py): one pass
// over [N, W] forward and one backward instead of PyTorch's several element-wise passes each way, and the
// gradient of both branches' pre-activations written into one [N, 2W] buffer (no concatenation of two halves).
#include "vectorized.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "library.h"

#include <optional>
#include <tuple>
#include <vector>

namespace {

using relgan::lanes;
using relgan::sigmoid;
using relgan::Vec;

constexpr int64_t kRowsPerTask = 16;

// The inputs, checked and contiguous: features [N, W], both [N, 2W], dropout bits [N, W] or none.
struct Inputs {
  at::Tensor features, both;
  std::optional<at::Tensor> bits;
};

Inputs prepared(const at::Tensor& features, const at::Tensor& both, const std::optional<at::Tensor>& bits) {
  TORCH_CHECK(features.dim() == 2 && both.dim() == 2 && both.size(0) == features.size(0) &&
                  both.size(1) == 2 * features.size(1),
              "highway: features [N, W] and both branches [N, 2W]");
  TORCH_CHECK(features.scalar_type() == at::kFloat && both.scalar_type() == at::kFloat, "highway: float32 inputs");
  TORCH_CHECK(!bits || (bits->scalar_type() == at::kShort && bits->sizes() == features.sizes()),
              "highway: dropout bits must be int16 [N, W]");
  const auto contiguous_bits = bits ? std::optional<at::Tensor>(bits->contiguous()) : std::nullopt;
  return {features.contiguous(), both.contiguous(), contiguous_bits};
}

// Calls visit(row, column, lanes, dropout factors) for every vector of [N, W], in parallel over rows. The factor
// of an element is scale where its bits are >= threshold and 0 elsewhere (1 everywhere without bits).
template <typename F>
void for_each_vector(const Inputs& in, int64_t threshold, double scale, F&& visit) {
  const int64_t rows = in.features.size(0), width = in.features.size(1);
  const int16_t* bits = in.bits ? in.bits->data_ptr<int16_t>() : nullptr;
  const float kept = static_cast<float>(scale);
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> factors(width, 1.0f);
    for (int64_t r = begin; r < end; ++r) {
      if (bits != nullptr)
        for (int64_t c = 0; c < width; ++c) factors[c] = bits[r * width + c] >= threshold ? kept : 0.0f;
      for (int64_t c = 0; c < width; c += Vec::size()) {
        const int64_t n = lanes(width - c);
        visit(r, c, n, Vec::loadu(factors.data() + c, n));
      }
    }
  });
}

// features [N, W], both [N, 2W] = (gate | transform) pre-activations, dropout bits [N, W] or none ->
// (f + sigmoid(gate) * (relu(transform) - f)) * dropout factor
at::Tensor highway_forward(const at::Tensor& features, const at::Tensor& both, const std::optional<at::Tensor>& bits,
                           int64_t threshold, double scale) {
  const Inputs in = prepared(features, both, bits);
  const int64_t width = in.features.size(1);
  auto out = at::empty_like(in.features);
  const float* f = in.features.data_ptr<float>();
  const float* gt = in.both.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for_each_vector(in, threshold, scale, [&](int64_t r, int64_t c, int64_t n, const Vec& factor) {
    const Vec x = Vec::loadu(f + r * width + c, n);
    const Vec gate = sigmoid(Vec::loadu(gt + r * 2 * width + c, n));
    const Vec transform = at::vec::maximum(Vec::loadu(gt + r * 2 * width + width + c, n), Vec(0.0f));
    ((x + gate * (transform - x)) * factor).store(o + r * width + c, n);
  });
  return out;
}

// grad [N, W] of the output -> (grad of features [N, W] through the gating alone, grad of both [N, 2W])
std::tuple<at::Tensor, at::Tensor> highway_backward(const at::Tensor& grad_in, const at::Tensor& features,
                                                    const at::Tensor& both, const std::optional<at::Tensor>& bits,
                                                    int64_t threshold, double scale) {
  const Inputs in = prepared(features, both, bits);
  const auto grad = grad_in.contiguous().to(at::kFloat);
  const int64_t width = in.features.size(1);
  auto grad_features = at::empty_like(in.features);
  auto grad_both = at::empty_like(in.both);
  const float* g = grad.data_ptr<float>();
  const float* f = in.features.data_ptr<float>();
  const float* gt = in.both.data_ptr<float>();
  float* gf = grad_features.data_ptr<float>();
  float* gb = grad_both.data_ptr<float>();
  for_each_vector(in, threshold, scale, [&](int64_t r, int64_t c, int64_t n, const Vec& factor) {
    const Vec go = Vec::loadu(g + r * width + c, n) * factor;
    const Vec x = Vec::loadu(f + r * width + c, n);
    const Vec gate = sigmoid(Vec::loadu(gt + r * 2 * width + c, n));
    const Vec pre_transform = Vec::loadu(gt + r * 2 * width + width + c, n);
    const Vec transform = at::vec::maximum(pre_transform, Vec(0.0f));
    (go * (Vec(1.0f) - gate)).store(gf + r * width + c, n);
    (go * (transform - x) * gate * (Vec(1.0f) - gate)).store(gb + r * 2 * width + c, n);
    Vec::blendv(Vec(0.0f), go * gate, pre_transform > Vec(0.0f)).store(gb + r * 2 * width + width + c, n);
  });
  return {grad_features, grad_both};
}

}  // namespace

RELGAN_LIBRARY(highway, m) {
  m.def("forward(Tensor features, Tensor both, Tensor? bits, int threshold, float scale) -> Tensor", &highway_forward);
  m.def("backward(Tensor grad, Tensor features, Tensor both, Tensor? bits, int threshold, float scale) -> "
        "(Tensor, Tensor)",
        &highway_backward);
}
