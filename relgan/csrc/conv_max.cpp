// Fused valid 1-D convolution + max over time for CPU (see conv_max.py).
// The filter responses of a time step live in registers only: the [rows, time, filters] responses are never
// written to memory, which is what made the unfused version memory-bound. GCC vector types keep it portable
// (64-byte vectors are one AVX-512 register, two AVX2 ones).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

constexpr int kVectorBytes = 64;

template <typename scalar_t>
constexpr int64_t kLanes = kVectorBytes / sizeof(scalar_t);

// sequence [R, T, d], weight_t [d*size, Cp] (row k = i*size + j is tap j of channel i; Cp = C rounded up to a
// multiple of the vector length with zero columns) -> values [R, C], index [R, C] (first time step reaching
// the maximum; NaN wins like torch.max). One vector of filters keeps its sums, maxima and argmaxima in
// registers over all time steps.
template <typename scalar_t>
void forward_rows(const scalar_t* seq, const scalar_t* wt, int64_t padded, scalar_t* values, int64_t* index,
                  int64_t begin, int64_t end, int64_t length, int64_t width, int64_t size, int64_t filters) {
  using index_t = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;
  typedef scalar_t vec_t __attribute__((vector_size(kVectorBytes)));
  typedef index_t ivec_t __attribute__((vector_size(kVectorBytes)));
  constexpr int64_t lanes = kLanes<scalar_t>;
  const int64_t steps = length - size + 1, taps = width * size;
  std::vector<scalar_t> windows(steps * taps);
  for (int64_t r = begin; r < end; ++r) {
    const scalar_t* x = seq + r * length * width;
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t i = 0; i < width; ++i)
        for (int64_t j = 0; j < size; ++j) windows[t * taps + i * size + j] = x[(t + j) * width + i];
    for (int64_t c0 = 0; c0 < padded; c0 += lanes) {
      vec_t best = vec_t{} - std::numeric_limits<scalar_t>::infinity();
      ivec_t arg = ivec_t{};
      for (int64_t t = 0; t < steps; ++t) {
        vec_t acc = vec_t{};
        for (int64_t k = 0; k < taps; ++k) {
          vec_t w;
          std::memcpy(&w, wt + k * padded + c0, sizeof(vec_t));
          acc += windows[t * taps + k] * w;
        }
        const ivec_t take = (acc > best) | ((acc != acc) & (best == best));
        best = take ? acc : best;
        arg = take ? ivec_t{} + static_cast<index_t>(t) : arg;
      }
      for (int64_t c = 0; c < lanes && c0 + c < filters; ++c) {
        values[r * filters + c0 + c] = best[c];
        index[r * filters + c0 + c] = arg[c];
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> conv_max_forward(const at::Tensor& sequence, const at::Tensor& weight,
                                                    int64_t size) {
  TORCH_CHECK(sequence.dim() == 3 && weight.dim() == 2, "conv_max_forward: sequence [R, T, d], weight [C, d*size]");
  TORCH_CHECK(weight.size(1) == sequence.size(2) * size, "conv_max_forward: weight width is not d*size");
  TORCH_CHECK(sequence.size(1) >= size, "conv_max_forward: filter longer than the sequence");
  const auto seq = sequence.contiguous();
  const int64_t rows = seq.size(0), length = seq.size(1), width = seq.size(2), filters = weight.size(0);
  auto values = at::empty({rows, filters}, seq.options());
  auto index = at::empty({rows, filters}, seq.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(seq.scalar_type(), "conv_max_forward", [&] {
    const int64_t padded = (filters + kLanes<scalar_t> - 1) / kLanes<scalar_t> * kLanes<scalar_t>;
    const auto wt = at::constant_pad_nd(weight.to(seq.scalar_type()).t(), {0, padded - filters}).contiguous();
    const scalar_t* s = seq.data_ptr<scalar_t>();
    const scalar_t* w = wt.data_ptr<scalar_t>();
    scalar_t* v = values.data_ptr<scalar_t>();
    int64_t* ix = index.data_ptr<int64_t>();
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t>(s, w, padded, v, ix, begin, end, length, width, size, filters);
    });
  });
  return {values, index};
}

// grad [R, C] flows to the winning window of each (row, filter): into the sequence at its positions and into
// the weight through its values. Rows are split into one block per thread, each with its own weight-gradient
// buffer, summed at the end in a fixed order.
std::tuple<at::Tensor, at::Tensor> conv_max_backward(const at::Tensor& grad, const at::Tensor& sequence,
                                                     const at::Tensor& weight, const at::Tensor& index,
                                                     int64_t size) {
  const auto seq = sequence.contiguous();
  const auto g = grad.to(seq.scalar_type()).contiguous();
  const auto w = weight.to(seq.scalar_type()).contiguous();
  const auto ix = index.contiguous();
  const int64_t rows = seq.size(0), length = seq.size(1), width = seq.size(2), filters = w.size(0);
  const int64_t taps = width * size;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  auto grad_sequence = at::zeros_like(seq);
  auto grad_weight_blocks = at::zeros({blocks, filters, taps}, seq.options());
  AT_DISPATCH_FLOATING_TYPES(seq.scalar_type(), "conv_max_backward", [&] {
    const scalar_t* x = seq.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const int64_t* ip = ix.data_ptr<int64_t>();
    scalar_t* gx = grad_sequence.data_ptr<scalar_t>();
    scalar_t* gw_all = grad_weight_blocks.data_ptr<scalar_t>();
    at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
      for (int64_t block = block_begin; block < block_end; ++block) {
        scalar_t* gw = gw_all + block * filters * taps;
        for (int64_t r = rows * block / blocks; r < rows * (block + 1) / blocks; ++r) {
          const scalar_t* xr = x + r * length * width;
          scalar_t* gxr = gx + r * length * width;
          for (int64_t c = 0; c < filters; ++c) {
            const scalar_t gc = gp[r * filters + c];
            const int64_t t = ip[r * filters + c];
            const scalar_t* wc = wp + c * taps;
            scalar_t* gwc = gw + c * taps;
            for (int64_t i = 0; i < width; ++i)
              for (int64_t j = 0; j < size; ++j) {
                const int64_t pos = (t + j) * width + i;
                gxr[pos] += gc * wc[i * size + j];
                gwc[i * size + j] += gc * xr[pos];
              }
          }
        }
      }
    });
  });
  return {grad_sequence, grad_weight_blocks.sum(0).to(weight.scalar_type())};
}

}  // namespace

TORCH_LIBRARY(relgan_conv_max, m) {
  m.def("forward(Tensor sequence, Tensor weight, int size) -> (Tensor, Tensor)", &conv_max_forward);
  m.def("backward(Tensor grad, Tensor sequence, Tensor weight, Tensor index, int size) -> (Tensor, Tensor)",
        &conv_max_backward);
}
