"""The weight mappings of a mixture-of-experts MLP: megatron-core's router and its sequential
local experts (``mlp.experts.local_experts.<e>``; the second ``*`` is the global expert index)
<-> Hugging Face's ``mlp.gate`` and per-expert ``mlp.experts.<e>`` gate/up/down projections."""

from mbridge_models.conversion.architectures._decoder import H, L
from mbridge_models.conversion.mapping import WeightMapping as M

ROUTER = M(L + "mlp.router.weight", H + "mlp.gate.weight")
EXPERTS = (
    M(L + "mlp.experts.local_experts.*.linear_fc1.weight",
      (H + "mlp.experts.*.gate_proj.weight", H + "mlp.experts.*.up_proj.weight"), "gated"),
    M(L + "mlp.experts.local_experts.*.linear_fc2.weight", H + "mlp.experts.*.down_proj.weight"),
)
MOE = (ROUTER, *EXPERTS)
