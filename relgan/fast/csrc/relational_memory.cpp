// The relational memory core over T steps (a teacher-forced sequence, or one sampling step), forward and
// backward, for CPU (see relgan/models/relational_memory.py, whose step this computes). Per time step the
// PyTorch code runs about 30 small ops forward and 50 backward on [B, N+1, F] tensors; here each step is its
// four matrix products and three fused loops over the batch. The backward stores the per-step inputs and
// output gradients of the four weight matrices and multiplies them once over all T*B rows at the end,
// instead of T products of B rows and T accumulations.
#include "vectorized.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include "library.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using relgan::lane_sum;
using relgan::lanes;
using relgan::sigmoid;
using relgan::Vec;

// The parameters in the order relgan/fast/relational_memory.py (KERNEL_PARAMETERS) passes them.
enum Parameter {
  kQkvWeight,            // [H*Q, F]
  kQkvNormWeight,        // [H*Q]
  kQkvNormBias,          // [H*Q]
  kAttentionNormWeight,  // [F]
  kAttentionNormBias,    // [F]
  kMlp1Weight,           // [F, F]
  kMlp1Bias,             // [F]
  kMlp2Weight,           // [F, F]
  kMlp2Bias,             // [F]
  kMlpNormWeight,        // [F]
  kMlpNormBias,          // [F]
  kGateWeight,           // [2F, F]
  kParameterCount
};

// Sizes: T steps, B batch, N memory slots, R = N + 1 rows (memory and input), H heads of D values, F = H*D,
// Q = 3D qkv values per head (keys as wide as the heads), HQ = H*Q.
struct Shape {
  int64_t T, B, N, R, H, D, F, Q, HQ;
};

// ------------------------------------------------------------------------------------------- vector helpers

inline float sum_of(const float* x, int64_t n) {
  Vec acc(0.0f);
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) acc = acc + Vec::loadu(x + j);
  float sum = lane_sum(acc);
  for (; j < n; ++j) sum += x[j];
  return sum;
}

inline float dot_of(const float* a, const float* b, int64_t n) {
  Vec acc(0.0f);
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) acc = acc + Vec::loadu(a + j) * Vec::loadu(b + j);
  float sum = lane_sum(acc);
  for (; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

// y += alpha * x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) (Vec::loadu(y + j) + Vec(alpha) * Vec::loadu(x + j)).store(y + j);
  for (; j < n; ++j) y[j] += alpha * x[j];
}

// ---------------------------------------------------------------------------------------- joint layer norm
// tf.contrib.layers.layer_norm on one batch element: statistics over all rows*width values, affine
// parameters per column. Rows are contiguous.

// xhat = (x - mean) * rstd for all rows, y = xhat * w + b for the first `affine_rows`; returns rstd.
float layer_norm(const float* x, int64_t rows, int64_t width, const float* w, const float* b, float eps,
                 float* xhat, float* y, int64_t affine_rows) {
  const int64_t n = rows * width;
  const float mean = sum_of(x, n) / static_cast<float>(n);
  Vec acc(0.0f);
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) {
    const Vec d = Vec::loadu(x + j) - Vec(mean);
    acc = acc + d * d;
  }
  float squares = lane_sum(acc);
  for (; j < n; ++j) squares += (x[j] - mean) * (x[j] - mean);
  const float rstd = 1.0f / std::sqrt(squares / static_cast<float>(n) + eps);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x_r = x + r * width;
    float* xhat_r = xhat + r * width;
    float* y_r = y + r * width;
    const bool affine = r < affine_rows;
    int64_t c = 0;
    for (; c + Vec::size() <= width; c += Vec::size()) {
      const Vec normed = (Vec::loadu(x_r + c) - Vec(mean)) * Vec(rstd);
      normed.store(xhat_r + c);
      if (affine) (normed * Vec::loadu(w + c) + Vec::loadu(b + c)).store(y_r + c);
    }
    for (; c < width; ++c) {
      xhat_r[c] = (x_r[c] - mean) * rstd;
      if (affine) y_r[c] = xhat_r[c] * w[c] + b[c];
    }
  }
  return rstd;
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w per column; dx may alias dy.
void layer_norm_backward(const float* dy, const float* xhat, int64_t rows, int64_t width, const float* w,
                         float rstd, float* dx) {
  const int64_t n = rows * width;
  Vec sum_g(0.0f), sum_gx(0.0f);
  float tail_g = 0.0f, tail_gx = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * width;
    int64_t c = 0;
    for (; c + Vec::size() <= width; c += Vec::size()) {
      const Vec g = Vec::loadu(dy + o + c) * Vec::loadu(w + c);
      g.store(dx + o + c);
      sum_g = sum_g + g;
      sum_gx = sum_gx + g * Vec::loadu(xhat + o + c);
    }
    for (; c < width; ++c) {
      dx[o + c] = dy[o + c] * w[c];
      tail_g += dx[o + c];
      tail_gx += dx[o + c] * xhat[o + c];
    }
  }
  const float mean_g = (lane_sum(sum_g) + tail_g) / static_cast<float>(n);
  const float mean_gx = (lane_sum(sum_gx) + tail_gx) / static_cast<float>(n);
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size())
    (Vec(rstd) * (Vec::loadu(dx + j) - Vec(mean_g) - Vec::loadu(xhat + j) * Vec(mean_gx))).store(dx + j);
  for (; j < n; ++j) dx[j] = rstd * (dx[j] - mean_g - xhat[j] * mean_gx);
}

// ------------------------------------------------------------------------------------------ matrix products
// The per-step products have only B or B*(N+1) rows. At 64-128 rows oneDNN's fp32 matmul, with each weight
// packed once per sequence into its blocked layout, ran them 1.2-1.7x faster than MKL's sgemm on a 2-core AMD
// VM (two runs of bench/cpu_kernels.py, packing included); a single step uses the weights as they are.
// Without oneDNN ATen's mm computes them.

// A weight as a linear layer's [out, in] matrix (possibly a transposed view) and, when packed, oneDNN's copy.
struct Matrix {
  at::Tensor dense;
  at::Tensor packed;
};

c10::IValue call(const char* name, const char* overload, std::vector<c10::IValue> stack) {
  c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).callBoxed(&stack);
  return stack.at(0);
}

class Products {
 public:
  explicit Products(bool onednn) : onednn_(onednn) {}

  // `rows`: how many rows the products will have (oneDNN picks its blocking for it).
  Matrix matrix(const at::Tensor& weight, bool pack, int64_t rows) const {
    if (!onednn_ || !pack) return {weight, {}};
    return {weight, call("mkldnn::_reorder_linear_weight", "", {weight.contiguous(), std::optional<int64_t>(rows)})
                        .toTensor()};
  }

  // x [M, in] -> x w^T + bias (+ add [M, out]), then ReLU if asked: [M, out].
  at::Tensor operator()(const at::Tensor& x, const Matrix& w, const std::optional<at::Tensor>& bias = {},
                        const std::optional<at::Tensor>& add = {}, bool relu = false) const {
    if (onednn_) {
      const at::Tensor& weight = w.packed.defined() ? w.packed : w.dense;
      if (add)
        return call("mkldnn::_linear_pointwise", "binary", {x, *add, weight, bias, std::string("add")}).toTensor();
      return call("mkldnn::_linear_pointwise", "",
                  {x, weight, bias, std::string(relu ? "relu" : "none"), c10::List<std::optional<at::Scalar>>(),
                   std::optional<std::string>()})
          .toTensor();
    }
    at::Tensor out = add ? at::addmm(*add, x, w.dense.t()) : bias ? at::addmm(*bias, x, w.dense.t())
                                                                  : at::mm(x, w.dense.t());
    return relu ? out.clamp_min_(0.0f) : out;
  }

 private:
  bool onednn_;
};

// ------------------------------------------------------------------------------------------------ attention
// Multi-head attention among the R rows of one batch element. qkv [R, HQ]: head h's queries, keys and values
// at columns h*Q + [0, D), + [D, 2D), + [2D, 3D). Scores are scaled by Q^-1/2 (the official code's choice).

// weights [H, R, R] = softmax(q k^T / sqrt(Q)), out [R, F] = weights v (head h at columns h*D).
void attend(const float* qkv, const Shape& s, float* weights, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.Q));
  std::fill(out, out + s.R * s.F, 0.0f);
  for (int64_t h = 0; h < s.H; ++h) {
    const float* head = qkv + h * s.Q;
    for (int64_t i = 0; i < s.R; ++i) {
      float* w_i = weights + (h * s.R + i) * s.R;
      float top = -INFINITY;
      for (int64_t j = 0; j < s.R; ++j) {
        w_i[j] = scale * dot_of(head + i * s.HQ, head + j * s.HQ + s.D, s.D);
        top = std::max(top, w_i[j]);
      }
      float total = 0.0f;
      for (int64_t j = 0; j < s.R; ++j) total += (w_i[j] = std::exp(w_i[j] - top));
      for (int64_t j = 0; j < s.R; ++j) {
        w_i[j] /= total;
        axpy(w_i[j], head + j * s.HQ + 2 * s.D, out + i * s.F + h * s.D, s.D);
      }
    }
  }
}

// d qkv [R, HQ] from d out [R, F]; scores [R] is scratch.
void attend_backward(const float* grad_out, const float* qkv, const float* weights, const Shape& s,
                     float* grad_qkv, float* scores) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.Q));
  std::fill(grad_qkv, grad_qkv + s.R * s.HQ, 0.0f);
  for (int64_t h = 0; h < s.H; ++h) {
    const float* head = qkv + h * s.Q;
    float* grad_head = grad_qkv + h * s.Q;
    for (int64_t i = 0; i < s.R; ++i) {
      const float* w_i = weights + (h * s.R + i) * s.R;
      const float* g_i = grad_out + i * s.F + h * s.D;
      float weighted = 0.0f;
      for (int64_t j = 0; j < s.R; ++j) {
        scores[j] = dot_of(g_i, head + j * s.HQ + 2 * s.D, s.D);  // d weights
        weighted += w_i[j] * scores[j];
        axpy(w_i[j], g_i, grad_head + j * s.HQ + 2 * s.D, s.D);  // d values
      }
      for (int64_t j = 0; j < s.R; ++j) {
        const float d_score = scale * w_i[j] * (scores[j] - weighted);
        axpy(d_score, head + j * s.HQ + s.D, grad_head + i * s.HQ, s.D);  // d queries
        axpy(d_score, head + i * s.HQ, grad_head + j * s.HQ + s.D, s.D);  // d keys
      }
    }
  }
}

// (sum over rows of grad * xhat, sum over rows of grad) for grad, xhat [..., W]: the gradients of a norm's
// weight and bias in one pass. Partial sums per fixed block of rows, so the result does not depend on the
// number of threads.
std::pair<at::Tensor, at::Tensor> norm_parameter_grads(const at::Tensor& grad, const at::Tensor& xhat) {
  const int64_t width = grad.size(-1), rows = grad.numel() / width, block = 256;
  const int64_t blocks = (rows + block - 1) / block;
  auto partial = at::zeros({2, blocks, width}, grad.options());
  const float* g = grad.data_ptr<float>();
  const float* x = xhat.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float* weight = partial.data_ptr<float>() + k * width;
      float* bias = weight + blocks * width;
      for (int64_t r = k * block; r < std::min(rows, (k + 1) * block); ++r) {
        for (int64_t c = 0; c < width; c += Vec::size()) {
          const int64_t w = lanes(width - c);
          const Vec g_c = Vec::loadu(g + r * width + c, w);
          (Vec::loadu(weight + c, w) + g_c * Vec::loadu(x + r * width + c, w)).store(weight + c, w);
          (Vec::loadu(bias + c, w) + g_c).store(bias + c, w);
        }
      }
    }
  });
  auto sums = partial.sum(1);
  return {sums[0], sums[1]};
}

// --------------------------------------------------------------------------------------------- the forward

// Buffers of the forward. With `save` each holds all T steps (what the backward reads); without, one step
// (index 0) reused, and memory two alternating steps.
struct Forward {
  at::Tensor memory;    // [T+1 or 2, B, N, F] memory entering each step
  at::Tensor tanh_mem;  // [T, B, N, F]
  at::Tensor xhat1;     // [T, B, R, HQ] normalised qkv
  at::Tensor rstd1;     // [T, B]
  at::Tensor weights;   // [T, B, H, R, R] attention weights
  at::Tensor xhat2;     // [T, B, R, F] normalised memory + input + attention
  at::Tensor rstd2;     // [T, B]
  at::Tensor hidden;    // [T, B, R, F] its affine output: the MLP's input
  at::Tensor relu;      // [T, B, R, F] the MLP's hidden layer
  at::Tensor xhat3;     // [T, B, R, F] normalised hidden + MLP
  at::Tensor rstd3;     // [T, B]
  at::Tensor gates;     // [T, B, N, 2F] input and forget gates before the sigmoids
};

Shape shape_of(int64_t steps, int64_t batch, int64_t slots, int64_t width, int64_t heads) {
  Shape s;
  s.T = steps;
  s.B = batch;
  s.N = slots;
  s.R = slots + 1;
  s.F = width;
  s.H = heads;
  s.D = width / heads;
  s.Q = 3 * s.D;
  s.HQ = s.H * s.Q;
  return s;
}

void check_inputs(const at::Tensor& x, const at::Tensor& qkv_x, const at::Tensor& gates_x, const at::Tensor& memory,
                  const std::vector<at::Tensor>& params, const Shape& s) {
  TORCH_CHECK(params.size() == kParameterCount, "relational memory: expected ", kParameterCount, " parameters");
  for (const auto& t : {x, qkv_x, gates_x, memory})
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), "relational memory: float32 contiguous inputs");
  for (const auto& p : params)
    TORCH_CHECK(p.scalar_type() == at::kFloat && p.is_contiguous(), "relational memory: float32 contiguous weights");
  TORCH_CHECK(s.F % s.H == 0 && x.dim() == 3 && x.size(2) == s.F && memory.size(0) == s.B, "relational memory: x");
  TORCH_CHECK(qkv_x.sizes() == at::IntArrayRef({s.T, s.B, s.HQ}), "relational memory: qkv_x must be [T, B, H*Q]");
  TORCH_CHECK(gates_x.sizes() == at::IntArrayRef({s.T, s.B, 2 * s.F}), "relational memory: gates_x must be [T, B, 2F]");
}

// x [T, B, F], qkv_x [T, B, H*Q], gates_x [T, B, 2F] (the input projections, time-major), memory [B, N, F]
// -> outputs [B, T, N*F] (the memory after each step) and, with `save`, the buffers of struct Forward in its
// order.
std::vector<at::Tensor> sequence_forward(const at::Tensor& x, const at::Tensor& qkv_x, const at::Tensor& gates_x,
                                         const at::Tensor& memory, const std::vector<at::Tensor>& params,
                                         int64_t heads, double eps_value, double forget_bias_value, bool save,
                                         bool onednn) {
  const Shape s = shape_of(x.size(0), x.size(1), memory.size(1), memory.size(2), heads);
  check_inputs(x, qkv_x, gates_x, memory, params, s);
  const float eps = static_cast<float>(eps_value);
  const float forget_bias = static_cast<float>(forget_bias_value);
  const int64_t kept = save ? s.T : 1;
  const auto options = x.options();
  Forward f;
  f.memory = at::empty({save ? s.T + 1 : 2, s.B, s.N, s.F}, options);
  f.tanh_mem = at::empty({kept, s.B, s.N, s.F}, options);
  f.xhat1 = at::empty({kept, s.B, s.R, s.HQ}, options);
  f.rstd1 = at::empty({kept, s.B}, options);
  f.weights = at::empty({kept, s.B, s.H, s.R, s.R}, options);
  f.xhat2 = at::empty({kept, s.B, s.R, s.F}, options);
  f.rstd2 = at::empty({kept, s.B}, options);
  f.hidden = at::empty({kept, s.B, s.R, s.F}, options);
  f.relu = at::empty({kept, s.B, s.R, s.F}, options);
  f.xhat3 = at::empty({kept, s.B, s.R, s.F}, options);
  f.rstd3 = at::empty({kept, s.B}, options);
  f.gates = at::empty({kept, s.B, s.N, 2 * s.F}, options);
  f.memory[0].copy_(memory);
  auto outputs = at::empty({s.B, s.T, s.N * s.F}, options);
  const Products products(onednn);
  const bool pack = s.T > 1;  // a single step (sampling) does not repay packing
  const Matrix qkv_weight = products.matrix(params[kQkvWeight], pack, s.B * s.N);
  const Matrix mlp1_weight = products.matrix(params[kMlp1Weight], pack, s.B * s.R);
  const Matrix mlp2_weight = products.matrix(params[kMlp2Weight], pack, s.B * s.R);
  const Matrix gate_weight = products.matrix(params[kGateWeight], pack, s.B * s.N);
  const float* p[kParameterCount];
  for (int64_t k = 0; k < kParameterCount; ++k) p[k] = params[k].data_ptr<float>();

  for (int64_t t = 0; t < s.T; ++t) {
    const int64_t k = save ? t : 0;
    const auto mem = f.memory[save ? t : t % 2];
    auto next = f.memory[save ? t + 1 : (t + 1) % 2];
    const auto qkv_memory = products(mem.view({s.B * s.N, s.F}), qkv_weight);
    // qkv norm, attention, residual, attention norm, tanh of the memory for the gates
    at::parallel_for(0, s.B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> qkv(s.R * s.HQ), normed(s.R * s.HQ), residual(s.R * s.F);
      for (int64_t b = begin; b < end; ++b) {
        const float* m = mem.data_ptr<float>() + b * s.N * s.F;
        std::copy_n(qkv_memory.data_ptr<float>() + b * s.N * s.HQ, s.N * s.HQ, qkv.data());
        std::copy_n(qkv_x.data_ptr<float>() + (t * s.B + b) * s.HQ, s.HQ, qkv.data() + s.N * s.HQ);
        const int64_t row = k * s.B + b;
        f.rstd1.data_ptr<float>()[row] =
            layer_norm(qkv.data(), s.R, s.HQ, p[kQkvNormWeight], p[kQkvNormBias], eps,
                       f.xhat1.data_ptr<float>() + row * s.R * s.HQ, normed.data(), s.R);
        attend(normed.data(), s, f.weights.data_ptr<float>() + row * s.H * s.R * s.R, residual.data());
        axpy(1.0f, m, residual.data(), s.N * s.F);
        axpy(1.0f, x.data_ptr<float>() + (t * s.B + b) * s.F, residual.data() + s.N * s.F, s.F);
        f.rstd2.data_ptr<float>()[row] =
            layer_norm(residual.data(), s.R, s.F, p[kAttentionNormWeight], p[kAttentionNormBias], eps,
                       f.xhat2.data_ptr<float>() + row * s.R * s.F, f.hidden.data_ptr<float>() + row * s.R * s.F,
                       s.R);
        float* tanh_m = f.tanh_mem.data_ptr<float>() + row * s.N * s.F;
        for (int64_t j = 0; j < s.N * s.F; j += Vec::size())
          Vec::loadu(m + j, lanes(s.N * s.F - j)).tanh().store(tanh_m + j, lanes(s.N * s.F - j));
      }
    });
    auto hidden = f.hidden[k].view({s.B * s.R, s.F});
    auto relu = f.relu[k].view({s.B * s.R, s.F});
    relu.copy_(products(hidden, mlp1_weight, params[kMlp1Bias], {}, true));
    const auto mlp_out = products(relu, mlp2_weight, params[kMlp2Bias]);
    const auto gates_memory = products(f.tanh_mem[k].view({s.B * s.N, s.F}), gate_weight);
    // residual, MLP norm, gated update of the memory
    at::parallel_for(0, s.B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> residual(s.R * s.F), candidate(s.R * s.F);
      for (int64_t b = begin; b < end; ++b) {
        const int64_t row = k * s.B + b;
        std::copy_n(mlp_out.data_ptr<float>() + b * s.R * s.F, s.R * s.F, residual.data());
        axpy(1.0f, f.hidden.data_ptr<float>() + row * s.R * s.F, residual.data(), s.R * s.F);
        f.rstd3.data_ptr<float>()[row] =
            layer_norm(residual.data(), s.R, s.F, p[kMlpNormWeight], p[kMlpNormBias], eps,
                       f.xhat3.data_ptr<float>() + row * s.R * s.F, candidate.data(), s.N);
        const float* m = mem.data_ptr<float>() + b * s.N * s.F;
        float* m_next = next.data_ptr<float>() + b * s.N * s.F;
        float* out = outputs.data_ptr<float>() + (b * s.T + t) * s.N * s.F;
        float* g = f.gates.data_ptr<float>() + row * s.N * 2 * s.F;
        const float* g_x = gates_x.data_ptr<float>() + (t * s.B + b) * 2 * s.F;
        const float* g_m = gates_memory.data_ptr<float>() + b * s.N * 2 * s.F;
        for (int64_t n = 0; n < s.N; ++n) {
          for (int64_t c = 0; c < 2 * s.F; ++c) g[n * 2 * s.F + c] = g_m[n * 2 * s.F + c] + g_x[c];
          const float* in_gate = g + n * 2 * s.F;
          const float* forget_gate = in_gate + s.F;
          const int64_t o = n * s.F;
          for (int64_t c = 0; c < s.F; c += Vec::size()) {
            const int64_t w = lanes(s.F - c);
            const Vec value =
                sigmoid(Vec::loadu(in_gate + c, w)) * Vec::loadu(candidate.data() + o + c, w).tanh() +
                sigmoid(Vec::loadu(forget_gate + c, w) + Vec(forget_bias)) * Vec::loadu(m + o + c, w);
            value.store(m_next + o + c, w);
            value.store(out + o + c, w);
          }
        }
      }
    });
  }
  std::vector<at::Tensor> result{outputs};
  if (save) {
    for (const auto& t : {f.memory, f.tanh_mem, f.xhat1, f.rstd1, f.weights, f.xhat2, f.rstd2, f.hidden, f.relu,
                          f.xhat3, f.rstd3, f.gates})
      result.push_back(t);
  }
  return result;
}

// -------------------------------------------------------------------------------------------- the backward

// grad_outputs [B, T, N*F] and the saved buffers (as sequence_forward returned them after the outputs) ->
// grads of x [T, B, F], qkv_x [T, B, H*Q], gates_x [T, B, 2F], memory [B, N, F], then of the parameters in
// their order.
std::vector<at::Tensor> sequence_backward(const at::Tensor& grad_outputs_in, const std::vector<at::Tensor>& saved,
                                          const std::vector<at::Tensor>& params, int64_t heads,
                                          double forget_bias_value, bool onednn) {
  const float forget_bias = static_cast<float>(forget_bias_value);
  TORCH_CHECK(saved.size() == 12, "relational memory backward: expected the 12 saved buffers");
  Forward f{saved[0], saved[1], saved[2], saved[3], saved[4], saved[5],
            saved[6], saved[7], saved[8], saved[9], saved[10], saved[11]};
  const auto grad_outputs = grad_outputs_in.contiguous().to(at::kFloat);
  const Shape s = shape_of(f.tanh_mem.size(0), f.tanh_mem.size(1), f.tanh_mem.size(2), f.tanh_mem.size(3), heads);
  const auto options = grad_outputs.options();
  auto grad_x = at::empty({s.T, s.B, s.F}, options);
  auto grad_qkv_x = at::empty({s.T, s.B, s.HQ}, options);
  auto grad_gates_x = at::empty({s.T, s.B, 2 * s.F}, options);
  // per-step gradients kept for the weight and norm-parameter gradients at the end
  auto grad_gates = at::empty({s.T, s.B, s.N, 2 * s.F}, options);
  auto grad_candidate = at::zeros({s.T, s.B, s.R, s.F}, options);  // the input row stays zero
  auto grad_mlp = at::empty({s.T, s.B, s.R, s.F}, options);      // of the MLP's output (= of its residual)
  auto grad_relu = at::empty({s.T, s.B, s.R, s.F}, options);
  auto grad_hidden = at::empty({s.T, s.B, s.R, s.F}, options);
  auto grad_normed_qkv = at::empty({s.T, s.B, s.R, s.HQ}, options);
  auto grad_qkv_memory = at::empty({s.T, s.B, s.N, s.HQ}, options);
  auto carry = at::zeros({s.B, s.N, s.F}, options);  // d loss / d memory entering step t + 1
  // d input = d output @ weight: products with the transposed weights
  const Products products(onednn);
  const bool pack = s.T > 1;
  const Matrix qkv_weight_t = products.matrix(params[kQkvWeight].t(), pack, s.B * s.N);
  const Matrix mlp1_weight_t = products.matrix(params[kMlp1Weight].t(), pack, s.B * s.R);
  const Matrix mlp2_weight_t = products.matrix(params[kMlp2Weight].t(), pack, s.B * s.R);
  const Matrix gate_weight_t = products.matrix(params[kGateWeight].t(), pack, s.B * s.N);
  const float* p[kParameterCount];
  for (int64_t k = 0; k < kParameterCount; ++k) p[k] = params[k].data_ptr<float>();

  for (int64_t t = s.T - 1; t >= 0; --t) {
    const int64_t step = t * s.B;
    // gated update and MLP norm
    at::parallel_for(0, s.B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t row = step + b;
        const float* d_out = grad_outputs.data_ptr<float>() + (b * s.T + t) * s.N * s.F;
        float* d_mem = carry.data_ptr<float>() + b * s.N * s.F;
        const float* m = f.memory.data_ptr<float>() + row * s.N * s.F;
        const float* xhat3 = f.xhat3.data_ptr<float>() + row * s.R * s.F;
        float* d_cand = grad_candidate.data_ptr<float>() + row * s.R * s.F;
        float* d_gx = grad_gates_x.data_ptr<float>() + row * 2 * s.F;
        std::fill(d_gx, d_gx + 2 * s.F, 0.0f);
        for (int64_t n = 0; n < s.N; ++n) {
          const float* in_gate = f.gates.data_ptr<float>() + (row * s.N + n) * 2 * s.F;
          const float* forget_gate = in_gate + s.F;
          float* d_in = grad_gates.data_ptr<float>() + (row * s.N + n) * 2 * s.F;
          float* d_forget = d_in + s.F;
          const int64_t o = n * s.F;
          for (int64_t c = 0; c < s.F; c += Vec::size()) {
            const int64_t w = lanes(s.F - c);
            const Vec d_next = Vec::loadu(d_mem + o + c, w) + Vec::loadu(d_out + o + c, w);
            const Vec candidate = Vec::loadu(xhat3 + o + c, w) * Vec::loadu(p[kMlpNormWeight] + c, w) +
                                  Vec::loadu(p[kMlpNormBias] + c, w);
            const Vec tc = candidate.tanh(), si = sigmoid(Vec::loadu(in_gate + c, w)),
                      sf = sigmoid(Vec::loadu(forget_gate + c, w) + Vec(forget_bias));
            const Vec d_in_c = d_next * tc * si * (Vec(1.0f) - si);
            const Vec d_forget_c = d_next * Vec::loadu(m + o + c, w) * sf * (Vec(1.0f) - sf);
            (d_next * si * (Vec(1.0f) - tc * tc)).store(d_cand + o + c, w);
            d_in_c.store(d_in + c, w);
            d_forget_c.store(d_forget + c, w);
            (d_next * sf).store(d_mem + o + c, w);
            (Vec::loadu(d_gx + c, w) + d_in_c).store(d_gx + c, w);
            (Vec::loadu(d_gx + s.F + c, w) + d_forget_c).store(d_gx + s.F + c, w);
          }
        }
        layer_norm_backward(d_cand, xhat3, s.R, s.F, p[kMlpNormWeight], f.rstd3.data_ptr<float>()[row],
                            grad_mlp.data_ptr<float>() + row * s.R * s.F);
      }
    });
    const auto grad_tanh_mem = products(grad_gates[t].view({s.B * s.N, 2 * s.F}), gate_weight_t);
    const auto d_mlp = grad_mlp[t].view({s.B * s.R, s.F});
    const auto d_relu_in = products(d_mlp, mlp2_weight_t);
    const float* relu = f.relu[t].data_ptr<float>();
    at::parallel_for(0, s.B * s.R * s.F, 4096, [&](int64_t begin, int64_t end) {
      const float* d_in = d_relu_in.data_ptr<float>();
      float* d = grad_relu.data_ptr<float>() + t * s.B * s.R * s.F;
      for (int64_t j = begin; j < end; ++j) d[j] = relu[j] > 0.0f ? d_in[j] : 0.0f;
    });
    const auto d_relu = grad_relu[t].view({s.B * s.R, s.F});
    grad_hidden[t].view({s.B * s.R, s.F}).copy_(products(d_relu, mlp1_weight_t, {}, d_mlp));
    // attention norm, attention, qkv norm
    at::parallel_for(0, s.B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> d_residual(s.R * s.F), qkv(s.R * s.HQ), d_qkv(s.R * s.HQ),
          scores(s.R);
      for (int64_t b = begin; b < end; ++b) {
        const int64_t row = step + b;
        layer_norm_backward(grad_hidden.data_ptr<float>() + row * s.R * s.F,
                            f.xhat2.data_ptr<float>() + row * s.R * s.F, s.R, s.F, p[kAttentionNormWeight],
                            f.rstd2.data_ptr<float>()[row], d_residual.data());
        float* d_mem = carry.data_ptr<float>() + b * s.N * s.F;
        const float* tanh_m = f.tanh_mem.data_ptr<float>() + row * s.N * s.F;
        const float* d_tanh = grad_tanh_mem.data_ptr<float>() + b * s.N * s.F;
        for (int64_t j = 0; j < s.N * s.F; ++j)
          d_mem[j] += d_residual[j] + d_tanh[j] * (1.0f - tanh_m[j] * tanh_m[j]);
        std::copy_n(d_residual.data() + s.N * s.F, s.F, grad_x.data_ptr<float>() + row * s.F);
        const float* xhat1 = f.xhat1.data_ptr<float>() + row * s.R * s.HQ;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t c = 0; c < s.HQ; ++c)
            qkv[r * s.HQ + c] = xhat1[r * s.HQ + c] * p[kQkvNormWeight][c] + p[kQkvNormBias][c];
        float* d_normed = grad_normed_qkv.data_ptr<float>() + row * s.R * s.HQ;
        attend_backward(d_residual.data(), qkv.data(), f.weights.data_ptr<float>() + row * s.H * s.R * s.R, s,
                        d_normed, scores.data());
        layer_norm_backward(d_normed, xhat1, s.R, s.HQ, p[kQkvNormWeight], f.rstd1.data_ptr<float>()[row],
                            d_qkv.data());
        std::copy_n(d_qkv.data(), s.N * s.HQ, grad_qkv_memory.data_ptr<float>() + row * s.N * s.HQ);
        std::copy_n(d_qkv.data() + s.N * s.HQ, s.HQ, grad_qkv_x.data_ptr<float>() + row * s.HQ);
      }
    });
    carry = products(grad_qkv_memory[t].view({s.B * s.N, s.HQ}), qkv_weight_t, {}, carry.view({s.B * s.N, s.F}))
                .view({s.B, s.N, s.F});
  }

  // parameter gradients: one product over all T*B rows per weight, one reduction per norm parameter
  auto rows = [](const at::Tensor& t) { return t.reshape({-1, t.size(-1)}); };
  auto memory_in = f.memory.narrow(0, 0, s.T);
  std::vector<at::Tensor> grads{grad_x, grad_qkv_x, grad_gates_x, carry};
  grads.resize(4 + kParameterCount);
  grads[4 + kQkvWeight] = at::mm(rows(grad_qkv_memory).t(), rows(memory_in));
  std::tie(grads[4 + kQkvNormWeight], grads[4 + kQkvNormBias]) = norm_parameter_grads(grad_normed_qkv, f.xhat1);
  std::tie(grads[4 + kAttentionNormWeight], grads[4 + kAttentionNormBias]) =
      norm_parameter_grads(grad_hidden, f.xhat2);
  grads[4 + kMlp1Weight] = at::mm(rows(grad_relu).t(), rows(f.hidden));
  grads[4 + kMlp1Bias] = rows(grad_relu).sum(0);
  grads[4 + kMlp2Weight] = at::mm(rows(grad_mlp).t(), rows(f.relu));
  grads[4 + kMlp2Bias] = rows(grad_mlp).sum(0);
  std::tie(grads[4 + kMlpNormWeight], grads[4 + kMlpNormBias]) = norm_parameter_grads(grad_candidate, f.xhat3);
  grads[4 + kGateWeight] = at::mm(rows(grad_gates).t(), rows(f.tanh_mem));
  return grads;
}

}  // namespace

RELGAN_LIBRARY(relational_memory, m) {
  m.def("forward(Tensor x, Tensor qkv_x, Tensor gates_x, Tensor memory, Tensor[] params, int heads, float eps, "
        "float forget_bias, bool save, bool onednn) -> Tensor[]",
        &sequence_forward);
  m.def("backward(Tensor grad_outputs, Tensor[] saved, Tensor[] params, int heads, float forget_bias, "
        "bool onednn) -> Tensor[]",
        &sequence_backward);
}
