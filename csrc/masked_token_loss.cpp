// Fused masked token loss: operator schema and the CPU kernel.
//
// mbridge_kernels::masked_token_loss_fwd(logits [N, V], labels int64 [N], weights float32 [N]?,
//     grad [N, V]?, ignore_index, label_smoothing, z_loss_weight) -> per-row loss float32 [N]
//
// For each row: lse = logsumexp(x) (computed in float for half/bf16 inputs),
// loss = w * (lse - (1-eps) x[y] - eps/V sum(x) + z lse^2); when `grad` is given it receives
// d(loss)/dx = w * (softmax(x) (1 + 2 z lse) - (1-eps) onehot(y) - eps/V). `grad` may alias
// `logits` (in-place gradient): each block of rows is fully read before it is overwritten.
// The semantics are those of mbridge_kernels/reference.py.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
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

// Rows in blocks of about kBlockElements logits (2 MB in float: cache-sized), each block
// through ATen's vectorised ops in the op-math type (float for half/bf16), the blocks spread
// over the threads. On two cores the op runs at 210-270 M logits/s (a scalar loop with two
// exp() per logit: 66-94 M/s); with autograd around it, on par with torch's cross-entropy
// forward + backward at a 2K vocabulary, faster at 128K (benchmarks/cpu_loss.py).
constexpr int64_t kBlockElements = int64_t(1) << 19;

void loss_rows_cpu(const at::Tensor& logits, const at::Tensor& labels,
                   const std::optional<at::Tensor>& weights, const std::optional<at::Tensor>& grad,
                   at::Tensor& loss, int64_t ignore_index, double eps, double z) {
  const int64_t n = logits.size(0), vocab = logits.size(1);
  TORCH_CHECK(vocab > 0, "masked_token_loss: logits have an empty vocabulary dimension");
  if (n == 0) return;
  const auto acc = at::toOpMathType(logits.scalar_type());
  const int64_t block = std::max<int64_t>(1, kBlockElements / std::max<int64_t>(vocab, 1));
  const int64_t blocks = (n + block - 1) / block;
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
  for (int64_t b = first; b < last; ++b) {
    const int64_t start = b * block, rows = std::min(block, n - start);
    const at::Tensor x = logits.narrow(0, start, rows).to(acc);
    const at::Tensor label = labels.narrow(0, start, rows);
    at::Tensor w = weights.has_value() ? weights->narrow(0, start, rows).to(acc)
                                       : at::ones({rows}, x.options());
    w = w.masked_fill(label == ignore_index, 0);
    const at::Tensor counted = w != 0;
    const at::Tensor valid = (label >= 0).logical_and_(label < vocab);
    const at::Tensor index = label.clamp(0, vocab - 1).unsqueeze(1);
    const at::Tensor lse = at::logsumexp(x, {1});
    const at::Tensor target = at::where(valid, x.gather(1, index).squeeze(1), 0);
    const at::Tensor row_loss = lse - (1 - eps) * target - (eps / vocab) * x.sum(1) +
                                z * lse * lse;
    loss.narrow(0, start, rows).copy_(at::where(counted, w * row_loss, 0));
    if (!grad.has_value()) continue;
    // Every read of this block's logits is above: the gradient may overwrite them (alias).
    at::Tensor g = (x - lse.unsqueeze(1)).exp_();
    g.mul_((w * (1 + 2 * z * lse)).unsqueeze(1)).sub_((w * (eps / vocab)).unsqueeze(1));
    g.scatter_add_(1, index, (-(w * (1 - eps)) * valid).unsqueeze(1));
    g.masked_fill_(counted.logical_not().unsqueeze(1), 0);
    grad->narrow(0, start, rows).copy_(g);
  }
  });
}

at::Tensor masked_token_loss_fwd_cpu(const at::Tensor& logits, const at::Tensor& labels,
                                     const std::optional<at::Tensor>& weights,
                                     const std::optional<at::Tensor>& grad, int64_t ignore_index,
                                     double label_smoothing, double z_loss_weight) {
  check_inputs(logits, labels, weights, grad);
  at::Tensor loss = at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
  loss_rows_cpu(logits, labels, weights, grad, loss, ignore_index, label_smoothing,
                z_loss_weight);
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
