// Fused masked token loss: operator schema and the CPU kernel.
//
// mbridge_kernels::masked_token_loss_fwd(logits [N, V], labels int64 [N], weights float32 [N]?,
//     grad [N, V]?, ignore_index, label_smoothing, z_loss_weight) -> per-row loss float32 [N]
//
// For each row: lse = logsumexp(x) (online, accumulated in float for half/bf16 inputs),
// loss = w * (lse - (1-eps) x[y] - eps/V sum(x) + z lse^2); when `grad` is given it receives
// d(loss)/dx = w * (softmax(x) (1 + 2 z lse) - (1-eps) onehot(y) - eps/V). `grad` may alias
// `logits` (in-place gradient): each row is fully read before it is overwritten.
// The semantics are those of mbridge_kernels/reference.py.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>

namespace {

void check_inputs(const at::Tensor& logits, const at::Tensor& labels,
                  const std::optional<at::Tensor>& weights, const std::optional<at::Tensor>& grad) {
  TORCH_CHECK(logits.dim() == 2, "masked_token_loss: logits must be [tokens, vocab], got ",
              logits.sizes());
  TORCH_CHECK(logits.size(1) == 0 || logits.stride(1) == 1,
              "masked_token_loss: logits need unit stride along the vocabulary");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0) &&
                  labels.scalar_type() == at::kLong && labels.is_contiguous(),
              "masked_token_loss: labels must be contiguous int64 [tokens]");
  if (weights.has_value()) {
    TORCH_CHECK(weights->dim() == 1 && weights->size(0) == logits.size(0) &&
                    weights->scalar_type() == at::kFloat && weights->is_contiguous(),
                "masked_token_loss: loss weights must be contiguous float32 [tokens]");
  }
  if (grad.has_value()) {
    TORCH_CHECK(grad->sizes() == logits.sizes() && grad->scalar_type() == logits.scalar_type() &&
                    (grad->size(1) == 0 || grad->stride(1) == 1),
                "masked_token_loss: grad must match logits' shape and dtype, unit vocab stride");
  }
}

template <typename scalar_t>
void loss_rows_cpu(const at::Tensor& logits, const at::Tensor& labels, const float* weights,
                   scalar_t* grad, int64_t grad_stride, float* loss, int64_t ignore_index,
                   double smoothing, double z_weight) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = logits.size(0), vocab = logits.size(1), stride = logits.stride(0);
  const scalar_t* base = logits.const_data_ptr<scalar_t>();
  const int64_t* label_ptr = labels.const_data_ptr<int64_t>();
  const acc_t eps = static_cast<acc_t>(smoothing), z = static_cast<acc_t>(z_weight);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(vocab, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const scalar_t* x = base + row * stride;
      const int64_t label = label_ptr[row];
      acc_t w = weights ? static_cast<acc_t>(weights[row]) : acc_t(1);
      if (label == ignore_index) w = 0;
      acc_t m = -std::numeric_limits<acc_t>::infinity(), s = 0, sx = 0;
      for (int64_t j = 0; j < vocab; ++j) {
        const acc_t v = static_cast<acc_t>(x[j]);
        if (v > m) {
          s = s * std::exp(m - v) + acc_t(1);
          m = v;
        } else {
          s += std::exp(v - m);
        }
        sx += v;
      }
      const acc_t lse = m + std::log(s);
      const acc_t target = (label >= 0 && label < vocab) ? static_cast<acc_t>(x[label]) : acc_t(0);
      const acc_t row_loss = lse - (1 - eps) * target - eps / vocab * sx + z * lse * lse;
      loss[row] = w != 0 ? static_cast<float>(w * row_loss) : 0.f;
      if (grad) {
        scalar_t* g = grad + row * grad_stride;
        if (w == 0) {
          for (int64_t j = 0; j < vocab; ++j) g[j] = scalar_t(0);
          continue;
        }
        const acc_t coef = w * (1 + 2 * z * lse), shift = w * eps / vocab, hit = w * (1 - eps);
        for (int64_t j = 0; j < vocab; ++j) {
          // Read before write: g may alias x.
          const acc_t v = static_cast<acc_t>(x[j]);
          acc_t out = std::exp(v - lse) * coef - shift;
          if (j == label) out -= hit;
          g[j] = static_cast<scalar_t>(out);
        }
      }
    }
  });
}

at::Tensor masked_token_loss_fwd_cpu(const at::Tensor& logits, const at::Tensor& labels,
                                     const std::optional<at::Tensor>& weights,
                                     const std::optional<at::Tensor>& grad, int64_t ignore_index,
                                     double label_smoothing, double z_loss_weight) {
  check_inputs(logits, labels, weights, grad);
  at::Tensor loss = at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "masked_token_loss_fwd_cpu", [&] {
    loss_rows_cpu<scalar_t>(
        logits, labels, weights.has_value() ? weights->const_data_ptr<float>() : nullptr,
        grad.has_value() ? grad->data_ptr<scalar_t>() : nullptr,
        grad.has_value() ? grad->stride(0) : 0, loss.data_ptr<float>(), ignore_index,
        label_smoothing, z_loss_weight);
  });
  return loss;
}

}  // namespace

TORCH_LIBRARY(mbridge_kernels, m) {
  m.def(
      "masked_token_loss_fwd(Tensor logits, Tensor labels, Tensor? weights, Tensor(a!)? grad, "
      "int ignore_index, float label_smoothing, float z_loss_weight) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbridge_kernels, CPU, m) {
  m.impl("masked_token_loss_fwd", &masked_token_loss_fwd_cpu);
}
