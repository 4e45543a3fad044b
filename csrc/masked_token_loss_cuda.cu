// Fused masked token loss: CUDA kernel (one thread block per token row).
//
// Pass 1: each thread keeps an online (max, sum-exp) pair and a row-sum over a strided slice of
// the row in float; a block reduction merges them into lse. Pass 2 writes
// w * (softmax (1 + 2 z lse) - (1-eps) onehot - eps/V) into `grad`, which may alias the
// logits (in-place gradient; every element is read by the thread that then overwrites it).
// Schema and semantics: masked_token_loss.cpp and mbridge_kernels/reference.py.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <optional>

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ void merge(float& m, float& s, float om, float os) {
  const float nm = fmaxf(m, om);
  if (nm == -INFINITY) return;  // both empty
  s = s * __expf(m - nm) + os * __expf(om - nm);
  m = nm;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
loss_rows_kernel(const scalar_t* __restrict__ logits, int64_t stride, scalar_t* grad,
                 int64_t grad_stride, const int64_t* __restrict__ labels,
                 const float* __restrict__ weights, float* __restrict__ loss, int64_t vocab,
                 int64_t ignore_index, float eps, float z) {
  __shared__ float sh_m[kWarps], sh_s[kWarps], sh_x[kWarps];
  __shared__ float sh_lse, sh_sx;
  const int64_t row = blockIdx.x;
  const scalar_t* x = logits + row * stride;
  const int64_t label = labels[row];
  float w = weights ? weights[row] : 1.f;
  if (label == ignore_index) w = 0.f;

  float m = -INFINITY, s = 0.f, sx = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
    const float v = static_cast<float>(x[j]);
    if (v > m) {
      s = s * __expf(m - v) + 1.f;
      m = v;
    } else {
      s += __expf(v - m);
    }
    sx += v;
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float om = __shfl_xor_sync(0xffffffff, m, offset);
    const float os = __shfl_xor_sync(0xffffffff, s, offset);
    sx += __shfl_xor_sync(0xffffffff, sx, offset);
    merge(m, s, om, os);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sh_m[warp] = m;
    sh_s[warp] = s;
    sh_x[warp] = sx;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < kWarps ? sh_m[lane] : -INFINITY;
    s = lane < kWarps ? sh_s[lane] : 0.f;
    sx = lane < kWarps ? sh_x[lane] : 0.f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float om = __shfl_xor_sync(0xffffffff, m, offset);
      const float os = __shfl_xor_sync(0xffffffff, s, offset);
      sx += __shfl_xor_sync(0xffffffff, sx, offset);
      merge(m, s, om, os);
    }
    if (lane == 0) {
      const float lse = m + logf(s);
      const float target =
          (label >= 0 && label < vocab) ? static_cast<float>(x[label]) : 0.f;
      const float row_loss = lse - (1.f - eps) * target - eps / vocab * sx + z * lse * lse;
      loss[row] = w != 0.f ? w * row_loss : 0.f;
      sh_lse = lse;
    }
  }
  __syncthreads();
  if (grad == nullptr) return;
  scalar_t* g = grad + row * grad_stride;
  const float lse = sh_lse;
  const float coef = w * (1.f + 2.f * z * lse), shift = w * eps / vocab, hit = w * (1.f - eps);
  for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
    float out = 0.f;
    if (w != 0.f) {
      out = __expf(static_cast<float>(x[j]) - lse) * coef - shift;
      if (j == label) out -= hit;
    }
    g[j] = static_cast<scalar_t>(out);
  }
}

at::Tensor masked_token_loss_fwd_cuda(const at::Tensor& logits, const at::Tensor& labels,
                                      const std::optional<at::Tensor>& weights,
                                      const std::optional<at::Tensor>& grad, int64_t ignore_index,
                                      double label_smoothing, double z_loss_weight) {
  TORCH_CHECK(logits.dim() == 2 && (logits.size(1) == 0 || logits.stride(1) == 1),
              "masked_token_loss: logits must be [tokens, vocab] with unit vocab stride");
  TORCH_CHECK(labels.is_cuda() && labels.scalar_type() == at::kLong && labels.is_contiguous() &&
                  labels.numel() == logits.size(0),
              "masked_token_loss: labels must be contiguous int64 [tokens] on the GPU");
  if (weights.has_value()) {
    TORCH_CHECK(weights->scalar_type() == at::kFloat && weights->is_contiguous() &&
                    weights->numel() == logits.size(0),
                "masked_token_loss: loss weights must be contiguous float32 [tokens]");
  }
  if (grad.has_value()) {
    TORCH_CHECK(grad->sizes() == logits.sizes() && grad->scalar_type() == logits.scalar_type() &&
                    (grad->size(1) == 0 || grad->stride(1) == 1),
                "masked_token_loss: grad must match logits' shape and dtype, unit vocab stride");
  }
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor loss = at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
  if (logits.size(0) == 0) return loss;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "masked_token_loss_fwd_cuda", [&] {
    loss_rows_kernel<scalar_t><<<logits.size(0), kThreads, 0, stream>>>(
        logits.const_data_ptr<scalar_t>(), logits.stride(0),
        grad.has_value() ? grad->data_ptr<scalar_t>() : nullptr,
        grad.has_value() ? grad->stride(0) : 0, labels.const_data_ptr<int64_t>(),
        weights.has_value() ? weights->const_data_ptr<float>() : nullptr,
        loss.data_ptr<float>(), logits.size(1), ignore_index,
        static_cast<float>(label_smoothing), static_cast<float>(z_loss_weight));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return loss;
}

}  // namespace

TORCH_LIBRARY_IMPL(mbridge_kernels, CUDA, m) {
  m.impl("masked_token_loss_fwd", &masked_token_loss_fwd_cuda);
}
