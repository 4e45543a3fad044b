"""Preset providers: published sizes, validation, the DeepSeek MRO, and tiny variants on CPU.

The size table lists, for every sized preset, the published parameter count and where it is
published. The counted size (mbridge_models.counting, checked against megatron-core itself in
test_counting.py) must be within 1% of it, or, when the published figure is rounded more
coarsely than that (a model card's "1.7B"), must round to it. Figures that are only the size in
a checkpoint's name, with no published count behind them, are marked nominal and checked at 10%
(they guard against gross errors only).
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import pytest

from mbridge_models import presets as P
from mbridge_models.counting import breakdown
from preset_variants import built_variants, transformer_variants  # noqa: F401 (fixture)

HF = "Hugging Face model page (parameter count of the safetensors checkpoint)"
CARD = "model card"


def llama4_vision_parameters() -> int:
    """Llama 4's vision encoder + projector, from its published vision_config: 34 ViT layers
    (hidden 1408, MLP 5632, LayerNorms and linear layers with bias), unfolded 14x14 patch
    embedding, class token, 577 positions, pixel-shuffle MLP (5632 -> 4096 -> 4096) and the
    4096 -> 5120 projector."""
    h, mlp = 1408, 5632
    layer = 4 * (h * h + h) + (h * mlp + mlp) + (mlp * h + h) + 2 * 2 * h
    return (34 * layer + 3 * 14 * 14 * h + h + 577 * h + 2 * 2 * h
            + mlp * 4096 + 4096 * 4096 + 4096 * 5120)


def qwen25_vl_vision_parameters(text_hidden: int) -> int:
    """Qwen2.5-VL's vision tower, from its published vision_config: 32 blocks (hidden 1280,
    RMSNorms, qkv/proj and SwiGLU MLP of 3420 with bias), a 2x14x14 patch Conv3d without bias,
    and the patch merger (RMSNorm, 5120 -> 5120 -> text hidden, with bias)."""
    h, mlp = 1280, 3420
    block = 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * (h * mlp + mlp) + (mlp * h + h)
    merger = h + (4 * h) ** 2 + 4 * h + 4 * h * text_hidden + text_hidden
    return 3 * 2 * 14 * 14 * h + 32 * block + merger


def _count(cls, kind: str) -> int:
    counts = breakdown(cls())
    return {
        "total": lambda: counts.total(),
        "total_no_mtp": lambda: counts.total(include_mtp=False),
        "non_embedding": lambda: counts.total(include_embeddings=False),
        "active": lambda: counts.active(include_mtp=False),
        # DeepSeek's "activated parameters" leave out the embedding lookup.
        "active_no_input_embedding": lambda: counts.active(include_mtp=False) - counts.embedding,
        "total_with_llama4_vision": lambda: counts.total() + llama4_vision_parameters(),
        "total_with_qwen25_vl_vision": lambda: counts.total()
        + qwen25_vl_vision_parameters(cls().hidden_size),
    }[kind]()


@dataclasses.dataclass(frozen=True)
class Published:
    preset: type
    kind: str
    figure: str  # as published, e.g. "8.03B"
    source: str
    nominal: bool = False  # only the size in the checkpoint's name is published
    tolerance: float | None = None  # set only with a stated reason

    @property
    def value(self) -> float:
        return float(_decimal(self.figure))

    @property
    def half_unit(self) -> float:
        """Half a unit in the last published digit: how far the true size may be from it."""
        d = _decimal(self.figure)
        return float(Decimal(1).scaleb(d.as_tuple().exponent)) / 2


def _decimal(figure: str) -> Decimal:
    scale = {"M": Decimal("1e6"), "B": Decimal("1e9")}[figure[-1]]
    return Decimal(figure[:-1]) * scale


R = Published
TABLE = [
    # Llama
    R(P.Llama2ModelProvider7B, "total", "6.74B", f"{HF} meta-llama/Llama-2-7b-hf"),
    R(P.Llama2ModelProvider13B, "total", "13.0B", f"{HF} meta-llama/Llama-2-13b-hf"),
    R(P.Llama2ModelProvider70B, "total", "69.0B", f"{HF} meta-llama/Llama-2-70b-hf"),
    R(P.Llama3ModelProvider8B, "total", "8.03B", f"{HF} meta-llama/Meta-Llama-3-8B"),
    R(P.Llama3ModelProvider70B, "total", "70.6B", f"{HF} meta-llama/Meta-Llama-3-70B"),
    R(P.Llama31ModelProvider8B, "total", "8.03B", f"{HF} meta-llama/Llama-3.1-8B"),
    R(P.Llama31ModelProvider70B, "total", "70.6B", f"{HF} meta-llama/Llama-3.1-70B"),
    R(P.Llama31ModelProvider405B, "total", "405B", f"{CARD} meta-llama/Llama-3.1-405B"),
    R(P.Llama32ModelProvider1B, "total", "1.23B", f"{CARD} meta-llama/Llama-3.2-1B"),
    R(P.Llama32ModelProvider3B, "total", "3.21B", f"{CARD} meta-llama/Llama-3.2-3B"),
    R(P.CodeLlamaModelProvider7B, "total", "6.74B", f"{HF} codellama/CodeLlama-7b-hf"),
    R(P.CodeLlamaModelProvider13B, "total", "13.0B", f"{HF} codellama/CodeLlama-13b-hf"),
    R(P.CodeLlamaModelProvider34B, "total", "33.7B", f"{HF} codellama/CodeLlama-34b-hf"),
    R(P.CodeLlamaModelProvider70B, "total", "69.0B", f"{HF} codellama/CodeLlama-70b-hf"),
    R(P.Llama4Experts16ModelProvider, "total_with_llama4_vision", "109B",
      f"{CARD} meta-llama/Llama-4-Scout-17B-16E (total includes the vision encoder)"),
    R(P.Llama4Experts16ModelProvider, "active", "17B", f"{CARD} (activated parameters)"),
    R(P.Llama4Experts128ModelProvider, "total_with_llama4_vision", "400B",
      f"{CARD} meta-llama/Llama-4-Maverick-17B-128E (total includes the vision encoder)"),
    R(P.Llama4Experts128ModelProvider, "active", "17B", f"{CARD} (activated parameters)"),
    # Qwen2 (the Qwen2 cards give no counts; the Hub's are used)
    R(P.Qwen2ModelProvider500M, "total", "494M", f"{HF} Qwen/Qwen2-0.5B"),
    R(P.Qwen2ModelProvider1P5B, "total", "1.54B", f"{HF} Qwen/Qwen2-1.5B"),
    R(P.Qwen2ModelProvider7B, "total", "7.62B", f"{HF} Qwen/Qwen2-7B"),
    R(P.Qwen2ModelProvider72B, "total", "72.7B", f"{HF} Qwen/Qwen2-72B"),
    # Qwen2.5: "Number of Parameters" / "(Non-Embedding)" on each model card
    R(P.Qwen25ModelProvider500M, "total", "0.49B", f"{CARD} Qwen/Qwen2.5-0.5B"),
    R(P.Qwen25ModelProvider500M, "non_embedding", "0.36B", f"{CARD} Qwen/Qwen2.5-0.5B"),
    R(P.Qwen25ModelProvider1P5B, "total", "1.54B", f"{CARD} Qwen/Qwen2.5-1.5B"),
    R(P.Qwen25ModelProvider1P5B, "non_embedding", "1.31B", f"{CARD} Qwen/Qwen2.5-1.5B"),
    R(P.Qwen25ModelProvider3B, "total", "3.09B", f"{CARD} Qwen/Qwen2.5-3B"),
    R(P.Qwen25ModelProvider3B, "non_embedding", "2.77B", f"{CARD} Qwen/Qwen2.5-3B"),
    R(P.Qwen25ModelProvider7B, "total", "7.61B", f"{CARD} Qwen/Qwen2.5-7B"),
    R(P.Qwen25ModelProvider7B, "non_embedding", "6.53B", f"{CARD} Qwen/Qwen2.5-7B"),
    R(P.Qwen25ModelProvider14B, "total", "14.7B", f"{CARD} Qwen/Qwen2.5-14B"),
    R(P.Qwen25ModelProvider14B, "non_embedding", "13.1B", f"{CARD} Qwen/Qwen2.5-14B"),
    R(P.Qwen25ModelProvider32B, "total", "32.5B", f"{CARD} Qwen/Qwen2.5-32B"),
    R(P.Qwen25ModelProvider32B, "non_embedding", "31.0B", f"{CARD} Qwen/Qwen2.5-32B"),
    R(P.Qwen25ModelProvider72B, "total", "72.7B", f"{CARD} Qwen/Qwen2.5-72B"),
    R(P.Qwen25ModelProvider72B, "non_embedding", "70.0B", f"{CARD} Qwen/Qwen2.5-72B"),
    # Qwen3 and Qwen3-MoE model cards
    R(P.Qwen3ModelProvider600M, "total", "0.6B", f"{CARD} Qwen/Qwen3-0.6B"),
    R(P.Qwen3ModelProvider600M, "non_embedding", "0.44B", f"{CARD} Qwen/Qwen3-0.6B"),
    R(P.Qwen3ModelProvider1P7B, "total", "1.7B", f"{CARD} Qwen/Qwen3-1.7B"),
    R(P.Qwen3ModelProvider1P7B, "non_embedding", "1.4B", f"{CARD} Qwen/Qwen3-1.7B"),
    R(P.Qwen3ModelProvider4B, "total", "4.0B", f"{CARD} Qwen/Qwen3-4B"),
    R(P.Qwen3ModelProvider4B, "non_embedding", "3.6B", f"{CARD} Qwen/Qwen3-4B"),
    R(P.Qwen3ModelProvider8B, "total", "8.2B", f"{CARD} Qwen/Qwen3-8B"),
    R(P.Qwen3ModelProvider8B, "non_embedding", "6.95B", f"{CARD} Qwen/Qwen3-8B"),
    R(P.Qwen3ModelProvider14B, "total", "14.8B", f"{CARD} Qwen/Qwen3-14B"),
    R(P.Qwen3ModelProvider14B, "non_embedding", "13.2B", f"{CARD} Qwen/Qwen3-14B"),
    R(P.Qwen3ModelProvider32B, "total", "32.8B", f"{CARD} Qwen/Qwen3-32B"),
    R(P.Qwen3ModelProvider32B, "non_embedding", "31.2B", f"{CARD} Qwen/Qwen3-32B"),
    R(P.Qwen3MoEModelProvider30B_A3B, "total", "30.5B", f"{CARD} Qwen/Qwen3-30B-A3B"),
    R(P.Qwen3MoEModelProvider30B_A3B, "non_embedding", "29.9B", f"{CARD} Qwen/Qwen3-30B-A3B"),
    # 3,353,032,704 active by the card's own convention (embeddings included, as for the
    # 235B's "22B"): the card's "3.3B" is truncated, not rounded, hence 2%.
    R(P.Qwen3MoEModelProvider30B_A3B, "active", "3.3B", f"{CARD} Qwen/Qwen3-30B-A3B",
      tolerance=0.02),
    R(P.Qwen3MoEModelProvider235B_A22B, "total", "235B", f"{CARD} Qwen/Qwen3-235B-A22B"),
    R(P.Qwen3MoEModelProvider235B_A22B, "non_embedding", "234B",
      f"{CARD} Qwen/Qwen3-235B-A22B"),
    R(P.Qwen3MoEModelProvider235B_A22B, "active", "22B", f"{CARD} Qwen/Qwen3-235B-A22B"),
    # Qwen2.5-VL: the Hub counts the whole checkpoint, vision tower included
    R(P.Qwen25VLModelProvider3B, "total_with_qwen25_vl_vision", "3.75B",
      f"{HF} Qwen/Qwen2.5-VL-3B-Instruct"),
    R(P.Qwen25VLModelProvider7B, "total_with_qwen25_vl_vision", "8.29B",
      f"{HF} Qwen/Qwen2.5-VL-7B-Instruct"),
    R(P.Qwen25VLModelProvider32B, "total_with_qwen25_vl_vision", "33.5B",
      f"{HF} Qwen/Qwen2.5-VL-32B-Instruct"),
    R(P.Qwen25VLModelProvider72B, "total_with_qwen25_vl_vision", "73.4B",
      f"{HF} Qwen/Qwen2.5-VL-72B-Instruct"),
    # DeepSeek / Moonlight
    R(P.DeepSeekV2ModelProvider, "total", "236B", "DeepSeek-V2 paper (arXiv 2405.04434)"),
    R(P.DeepSeekV2ModelProvider, "active_no_input_embedding", "21B", "DeepSeek-V2 paper"),
    R(P.DeepSeekV2LiteModelProvider, "total", "15.7B", "DeepSeek-V2 paper, V2-Lite appendix"),
    R(P.DeepSeekV3ModelProvider, "total_no_mtp", "671B", "DeepSeek-V3 report (arXiv 2412.19437)"),
    R(P.DeepSeekV3ModelProvider, "total", "685B",
      f"{HF} deepseek-ai/DeepSeek-V3 (main model + MTP module; the checkpoint also stores the "
      "MTP's own copies of embedding and head, which megatron shares)"),
    R(P.DeepSeekV3ModelProvider, "active_no_input_embedding", "37B", "DeepSeek-V3 report"),
    R(P.MoonlightModelProvider16B, "total", "16B", f"{CARD} moonshotai/Moonlight-16B-A3B"),
    R(P.MoonlightModelProvider16B, "active", "3B", f"{CARD} moonshotai/Moonlight-16B-A3B"),
    # Nemotron
    R(P.Nemotron3ModelProvider4B, "non_embedding", "2.6B",
      "Minitron paper (arXiv 2407.14679), non-embedding parameters"),
    R(P.Nemotron3ModelProvider4B, "total", "4B", "checkpoint name", nominal=True),
    R(P.Nemotron3ModelProvider8B, "non_embedding", "6.2B",
      "Minitron paper (arXiv 2407.14679), non-embedding parameters"),
    R(P.Nemotron3ModelProvider8B, "total", "8B", "checkpoint name", nominal=True),
    R(P.Nemotron3ModelProvider22B, "total", "22B", "NeMo config name (no public checkpoint)",
      nominal=True),
    R(P.Nemotron4ModelProvider15B, "non_embedding", "12.5B",
      "Nemotron-4 15B report (arXiv 2402.16819)"),
    R(P.Nemotron4ModelProvider340B, "total", "340B", "Nemotron-4 340B report (arXiv 2406.11704)"),
    R(P.Nemotron4ModelProvider340B, "non_embedding", "331.6B", "Nemotron-4 340B report"),
    R(P.NemotronHModelProvider8B, "total", "8B", "checkpoint name", nominal=True),
    R(P.NemotronHModelProvider47B, "total", "47B", "checkpoint name", nominal=True),
    R(P.NemotronHModelProvider56B, "total", "56B", "checkpoint name", nominal=True),
    R(P.NemotronNanoModelProvider9Bv2, "total", "8.89B", f"{HF} nvidia/NVIDIA-Nemotron-Nano-9B-v2"),
    R(P.NemotronNanoModelProvider12Bv2, "total", "12.3B",
      f"{HF} nvidia/NVIDIA-Nemotron-Nano-12B-v2"),
    # Mamba-2 (state-spaces names the checkpoints by size; no finer count is published)
    R(P.MambaModelProvider130M, "total", "130M", "checkpoint name", nominal=True),
    R(P.MambaModelProvider370M, "total", "370M", "checkpoint name", nominal=True),
    R(P.MambaModelProvider780M, "total", "780M", "checkpoint name", nominal=True),
    R(P.MambaModelProvider1P3B, "total", "1.3B", "checkpoint name", nominal=True),
    R(P.MambaModelProvider2P7B, "total", "2.7B", "checkpoint name", nominal=True),
    R(P.NVIDIAMambaModelProvider8B, "total", "8B", "checkpoint name", nominal=True),
    R(P.NVIDIAMambaHybridModelProvider8B, "total", "8B", "checkpoint name", nominal=True),
]

NOMINAL_TOLERANCE = 0.10


def _tolerance(row: Published) -> float:
    if row.tolerance is not None:
        return row.tolerance
    if row.nominal:
        return NOMINAL_TOLERANCE
    return max(0.01, row.half_unit / row.value)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r.preset.__name__}-{r.kind}")
def test_counted_size_matches_published(row):
    counted = _count(row.preset, row.kind)
    error = abs(counted - row.value) / row.value
    assert error <= _tolerance(row), (
        f"{row.preset.__name__} {row.kind}: counted {counted:,} vs published {row.figure} "
        f"({row.source}): {error:.2%} off")


def test_every_sized_preset_has_a_published_total():
    totals = {row.preset for row in TABLE if not row.kind.startswith("active")}
    missing = [name for name, cls in P.all_presets().items() if cls not in totals]
    assert not missing
    assert {row.preset for row in TABLE} <= set(P.all_presets().values())


def test_precise_references_meet_one_percent():
    """Rows whose published figure has enough digits are held to 1%, not to its rounding."""
    for row in TABLE:
        if not row.nominal and row.half_unit / row.value <= 0.01:
            counted = _count(row.preset, row.kind)
            assert abs(counted - row.value) <= 0.01 * row.value, row


def test_exact_checkpoint_sizes():
    """Checkpoints whose exact parameter count is published on their Hub page."""
    exact = {
        P.Llama2ModelProvider7B: 6_738_415_616,
        P.Llama3ModelProvider8B: 8_030_261_248,
        P.Llama32ModelProvider1B: 1_235_814_400,
        P.Qwen2ModelProvider500M: 494_032_768,
        P.Qwen25ModelProvider7B: 7_615_616_512,
    }
    for cls, size in exact.items():
        assert breakdown(cls()).total() == size, cls.__name__
    # Llama 4 Scout's checkpoint (text + vision) and Qwen2.5-VL-7B's (text + vision).
    assert _count(P.Llama4Experts16ModelProvider, "total_with_llama4_vision") == 108_641_793_536
    assert _count(P.Qwen25VLModelProvider7B, "total_with_qwen25_vl_vision") == 8_292_166_656


# ----------------------------------------------------------------------------- the classes


def test_all_presets_lists_each_sized_class_once_by_name():
    found = P.all_presets()
    assert len(found) == len(set(found.values())) >= 60
    for name, cls in found.items():
        assert cls.__name__ == name and getattr(P, name) is cls
        assert dataclasses.is_dataclass(cls)
    # family bases and aliases are importable but not listed as sized presets
    assert "Llama3ModelProvider" not in found and "DeepSeekModelProvider" not in found
    assert P.DeepseekV2ModelProvider is P.DeepSeekV2ModelProvider
    assert P.MambaProvider1_3B is P.MambaModelProvider1P3B
    assert P.NemotronNano9Bv2Provider is P.NemotronNanoModelProvider9Bv2


@pytest.mark.parametrize("name", sorted(P.all_presets()))
def test_preset_validates_as_published(name):
    """Each published architecture passes megatron-core's own validation (finalize())."""
    provider = P.all_presets()[name]()
    assert provider.vocab_size and provider.num_layers and provider.hidden_size
    provider.finalize()
    assert provider.ffn_hidden_size and provider.kv_channels


def test_presets_are_editable_before_finalize():
    model = P.Llama3ModelProvider8B(tensor_model_parallel_size=8)
    model.num_layers = 16
    model.finalize()
    assert model.tensor_model_parallel_size == 8 and model.num_layers == 16
    assert model.hf_model_id == "meta-llama/Meta-Llama-3-8B"


def test_deepseek_mro_defers_validation_to_finalize():
    from megatron.core.transformer.transformer_config import MLATransformerConfig

    from mbridge_config.errors import ConfigError
    from mbridge_models.gpt_provider import GPTModelProvider
    from mbridge_models.provider import ModelProviderMixin

    mro = P.DeepSeekV3ModelProvider.__mro__
    assert mro.index(GPTModelProvider) < mro.index(ModelProviderMixin) < mro.index(
        MLATransformerConfig)
    assert P.DeepSeekV3ModelProvider.__post_init__ is ModelProviderMixin.__post_init__
    # MLATransformerConfig's own rule: RoPE fusion for MLA needs YaRN. Not checked at
    # construction (deferred), checked by finalize().
    model = P.MoonlightModelProvider16B(apply_rope_fusion=True)
    assert model.rope_type == "rope" and model.multi_latent_attention
    with pytest.raises(ConfigError, match="YARN"):
        model.finalize()


def test_mamba_presets_say_what_building_needs():
    from mbridge_models.mamba_provider import missing_mamba_requirements

    if not missing_mamba_requirements():
        pytest.skip("mamba-ssm, causal-conv1d, TE and CUDA are all here")
    for cls in (P.MambaModelProvider130M, P.NemotronHModelProvider8B):
        with pytest.raises(RuntimeError, match="mamba-ssm"):
            cls().provide()


# ----------------------------------------------------------------------------- tiny variants


@pytest.mark.multiproc
@pytest.mark.parametrize("name", sorted(transformer_variants()))
def test_tiny_variant_runs_forward_and_backward_on_cpu(built_variants, name):  # noqa: F811
    result = built_variants[name]
    assert math.isfinite(result["loss"]) and 3.0 < result["loss"] < 7.0  # ~ln(128) at init
    assert result["parameters_with_grad"] == result["parameter_tensors"]
    assert result["grads_finite"]
