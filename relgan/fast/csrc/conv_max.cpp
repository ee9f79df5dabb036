// Fused valid 1-D convolution + max over time for CPU (the reference: Discriminator.classify in
// relgan/models/discriminator.py; the wrapper: relgan/fast/discriminator.py).
// The filter responses of a time step live in registers only: the [rows, time, filters] responses are never
// written to memory, which is what made the unfused version memory-bound. GCC vector types keep it portable
// (64-byte vectors are one AVX-512 register, two AVX2 ones).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "library.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

constexpr int kVectorBytes = 64;

template <typename scalar_t>
constexpr int64_t kLanes = kVectorBytes / sizeof(scalar_t);

// The argmax lanes: as wide as the values, so that one index vector pairs with one value vector.
template <typename scalar_t>
using IndexOf = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;

// Filter vectors per pass over the time steps: two independent max chains hide the latency of compare + blend.
constexpr int64_t kBlocks = 2;

// Calls f(size, width) with both as compile-time constants for the paper's shapes (width 1, filters of 2 to 5
// steps: the loops unroll and the weights stay in registers), as 0 ("read them at run time") otherwise.
template <typename F>
auto with_static_shape(int64_t size, int64_t width, F&& f) {
  using std::integral_constant;
  if (width == 1) {
    switch (size) {
      case 2: return f(integral_constant<int, 2>{}, integral_constant<int, 1>{});
      case 3: return f(integral_constant<int, 3>{}, integral_constant<int, 1>{});
      case 4: return f(integral_constant<int, 4>{}, integral_constant<int, 1>{});
      case 5: return f(integral_constant<int, 5>{}, integral_constant<int, 1>{});
      default: break;
    }
  }
  return f(integral_constant<int, 0>{}, integral_constant<int, 0>{});
}

// Whether no response of this row can overflow: the row is finite and max |x| times the largest sum of |w| over
// a filter's taps is finite. Then no response is NaN and the plain "greater than" comparison finds torch.max's
// first argmax; otherwise the NaN-aware one runs.
template <typename scalar_t>
bool finite_responses(const scalar_t* x, int64_t n, scalar_t weight_bound) {
  scalar_t largest = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (!std::isfinite(x[k])) return false;
    largest = std::max(largest, std::abs(x[k]));
  }
  return largest * weight_bound < std::numeric_limits<scalar_t>::max();
}

// The maxima over time and first argmaxima of kBlocks filter vectors of one row: windows [steps, taps],
// wt [taps, padded] from column c0. NaN_AWARE: a NaN response wins over numbers, the first NaN over later ones.
template <typename scalar_t, int TAPS, bool NAN_AWARE, typename vec_t, typename ivec_t>
void filter_maxima(const scalar_t* windows, int64_t steps, int64_t runtime_taps, const scalar_t* wt, int64_t padded,
                   int64_t c0, vec_t* best, ivec_t* arg) {
  using index_t = IndexOf<scalar_t>;
  constexpr int64_t lanes = kLanes<scalar_t>;
  const int64_t taps = TAPS > 0 ? TAPS : runtime_taps;
  for (int64_t b = 0; b < kBlocks; ++b) {
    best[b] = vec_t{} - std::numeric_limits<scalar_t>::infinity();
    arg[b] = ivec_t{};
  }
  for (int64_t t = 0; t < steps; ++t) {
    const scalar_t* window = windows + t * taps;
    for (int64_t b = 0; b < kBlocks; ++b) {
      vec_t acc = vec_t{};
      for (int64_t k = 0; k < taps; ++k) {
        vec_t w;
        std::memcpy(&w, wt + k * padded + c0 + b * lanes, sizeof(vec_t));
        acc += window[k] * w;
      }
      ivec_t take = acc > best[b];
      if constexpr (NAN_AWARE) take |= (acc != acc) & (best[b] == best[b]);
      best[b] = take ? acc : best[b];
      arg[b] = take ? ivec_t{} + static_cast<index_t>(t) : arg[b];
    }
  }
}

// sequence [R, T, d], weight_t [d*size, Cp] (row k = i*size + j is tap j of channel i; Cp = C rounded up to a
// multiple of kBlocks vectors with zero columns) -> values [R, C], index [R, C] (first time step reaching the
// maximum; NaN wins like torch.max). The filter responses live in registers only.
template <typename scalar_t, int SIZE, int WIDTH>
void forward_rows(const scalar_t* seq, const scalar_t* wt, int64_t padded, scalar_t weight_bound, scalar_t* values,
                  int64_t* index, int64_t begin, int64_t end, int64_t length, int64_t runtime_width,
                  int64_t runtime_size, int64_t filters) {
  using index_t = IndexOf<scalar_t>;
  typedef scalar_t vec_t __attribute__((vector_size(kVectorBytes)));
  typedef index_t ivec_t __attribute__((vector_size(kVectorBytes)));
  constexpr int64_t lanes = kLanes<scalar_t>;
  const int64_t size = SIZE > 0 ? SIZE : runtime_size, width = WIDTH > 0 ? WIDTH : runtime_width;
  const int64_t steps = length - size + 1, taps = width * size;
  std::vector<scalar_t> windows(steps * taps);
  vec_t best[kBlocks];
  ivec_t arg[kBlocks];
  for (int64_t r = begin; r < end; ++r) {
    const scalar_t* x = seq + r * length * width;
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t i = 0; i < width; ++i)
        for (int64_t j = 0; j < size; ++j) windows[t * taps + i * size + j] = x[(t + j) * width + i];
    const bool finite = finite_responses(x, length * width, weight_bound);
    for (int64_t c0 = 0; c0 < padded; c0 += kBlocks * lanes) {
      if (finite)
        filter_maxima<scalar_t, SIZE * WIDTH, false>(windows.data(), steps, taps, wt, padded, c0, best, arg);
      else
        filter_maxima<scalar_t, SIZE * WIDTH, true>(windows.data(), steps, taps, wt, padded, c0, best, arg);
      for (int64_t c = 0; c < kBlocks * lanes && c0 + c < filters; ++c) {
        values[r * filters + c0 + c] = best[c / lanes][c % lanes];
        index[r * filters + c0 + c] = arg[c / lanes][c % lanes];
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
    const int64_t unit = kBlocks * kLanes<scalar_t>;
    const int64_t padded = (filters + unit - 1) / unit * unit;
    const auto w = weight.to(seq.scalar_type());
    const auto wt = at::constant_pad_nd(w.t(), {0, padded - filters}).contiguous();
    // |w| summed over the taps, as a bound: NaN or infinite weights make every row take the NaN-aware path
    const scalar_t weight_bound = w.abs().sum(1).max().template item<scalar_t>();
    const scalar_t* s = seq.data_ptr<scalar_t>();
    const scalar_t* wp = wt.data_ptr<scalar_t>();
    scalar_t* v = values.data_ptr<scalar_t>();
    int64_t* ix = index.data_ptr<int64_t>();
    with_static_shape(size, width, [&](auto static_size, auto static_width) {
      at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
        forward_rows<scalar_t, decltype(static_size)::value, decltype(static_width)::value>(
            s, wp, padded, weight_bound, v, ix, begin, end, length, width, size, filters);
      });
    });
  });
  return {values, index};
}

template <typename scalar_t, int SIZE, int WIDTH>
void backward_rows(const scalar_t* __restrict x, const scalar_t* __restrict grad, const scalar_t* __restrict w,
                   const int64_t* __restrict index, scalar_t* __restrict grad_x, scalar_t* __restrict grad_w,
                   int64_t begin, int64_t end, int64_t length, int64_t runtime_width, int64_t runtime_size,
                   int64_t filters) {
  const int64_t size = SIZE > 0 ? SIZE : runtime_size, width = WIDTH > 0 ? WIDTH : runtime_width;
  const int64_t taps = width * size;
  for (int64_t r = begin; r < end; ++r) {
    const scalar_t* xr = x + r * length * width;
    scalar_t* gxr = grad_x + r * length * width;
    for (int64_t c = 0; c < filters; ++c) {
      const scalar_t gc = grad[r * filters + c];
      const int64_t t = index[r * filters + c];
      const scalar_t* wc = w + c * taps;
      scalar_t* gwc = grad_w + c * taps;
      for (int64_t i = 0; i < width; ++i)
        for (int64_t j = 0; j < size; ++j) {
          const int64_t pos = (t + j) * width + i;
          gxr[pos] += gc * wc[i * size + j];
          gwc[i * size + j] += gc * xr[pos];
        }
    }
  }
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
    const scalar_t* xp = seq.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const int64_t* ip = ix.data_ptr<int64_t>();
    scalar_t* gx = grad_sequence.data_ptr<scalar_t>();
    scalar_t* gw = grad_weight_blocks.data_ptr<scalar_t>();
    with_static_shape(size, width, [&](auto static_size, auto static_width) {
      at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
        for (int64_t block = block_begin; block < block_end; ++block)
          backward_rows<scalar_t, decltype(static_size)::value, decltype(static_width)::value>(
              xp, gp, wp, ip, gx, gw + block * filters * taps, rows * block / blocks, rows * (block + 1) / blocks,
              length, width, size, filters);
      });
    });
  });
  return {grad_sequence, grad_weight_blocks.sum(0).to(weight.scalar_type())};
}

}  // namespace

RELGAN_LIBRARY(conv_max, m) {
  m.def("forward(Tensor sequence, Tensor weight, int size) -> (Tensor, Tensor)", &conv_max_forward);
  m.def("backward(Tensor grad, Tensor sequence, Tensor weight, Tensor index, int size) -> (Tensor, Tensor)",
        &conv_max_backward);
}
