"""Recipes: every one builds and validates at the world size its layout needs, keeps its preset's
architecture, has the published defaults of the table below, takes overrides, and is the same
object under mbridge.recipes as under mbridge_train.recipes."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import pkgutil

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from multirank import run_ranks

import mbridge_train.recipes as recipes_pkg
from mbridge.recipe_index import find_recipes
from mbridge_config import ConfigContainer, ConfigError
from mbridge_models import presets

# ------------------------------------------------------------------ the expected defaults
# (preset class, tp, pp, vpp, cp, ep, sp, seq, gbs, mbs, lr, min_lr, warm-up, train_iters), written
# out here from the published recipes rather than read from the code under test.

LLAMA = dict(seq=8192, gbs=512, mbs=1, lr=3e-4, min_lr=3e-5, warmup=2000, iters=1_168_251)
QWEN = dict(seq=4096, gbs=32, mbs=2, lr=3e-4, min_lr=3e-5, warmup=500, iters=300_000)
NEMOH = dict(seq=8192, gbs=768, mbs=1, lr=3e-4, min_lr=3e-5, warmup=2000, iters=1_168_251)
DEEPSEEK = dict(seq=4096, mbs=1, lr=3e-4, min_lr=3e-5, warmup=2000, iters=1_000_000)


def row(preset, tp=1, pp=1, vpp=None, cp=1, ep=1, sp=False, **schedule):
    return dict(preset=preset, tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, sp=sp, **schedule)


PRETRAIN = {
    "llama.llama3_8b": row("Llama3ModelProvider8B", cp=2, **LLAMA),
    "llama.llama3_70b": row("Llama3ModelProvider70B", 4, 4, 5, 2, sp=True, **LLAMA),
    "llama.llama31_8b": row("Llama31ModelProvider8B", cp=2, **LLAMA),
    "llama.llama31_70b": row("Llama31ModelProvider70B", 4, 4, 5, 2, sp=True, **LLAMA),
    "llama.llama31_405b": row("Llama31ModelProvider405B", 8, 8, 2, 4, sp=True, **LLAMA),
    "llama.llama32_1b": row("Llama32ModelProvider1B", **LLAMA),
    "llama.llama32_3b": row("Llama32ModelProvider3B", **LLAMA),
    "qwen.qwen25_500m": row("Qwen25ModelProvider500M", **QWEN),
    "qwen.qwen25_1p5b": row("Qwen25ModelProvider1P5B", **QWEN),
    "qwen.qwen25_7b": row("Qwen25ModelProvider7B", 2, **QWEN),
    "qwen.qwen25_14b": row("Qwen25ModelProvider14B", 4, **QWEN),
    "qwen.qwen25_32b": row("Qwen25ModelProvider32B", 8, 2, **QWEN),
    "qwen.qwen25_72b": row("Qwen25ModelProvider72B", 8, 4, **QWEN),
    "qwen.qwen3_600m": row("Qwen3ModelProvider600M", **QWEN),
    "qwen.qwen3_1p7b": row("Qwen3ModelProvider1P7B", **QWEN),
    "qwen.qwen3_4b": row("Qwen3ModelProvider4B", 2, **QWEN),
    "qwen.qwen3_8b": row("Qwen3ModelProvider8B", 4, **QWEN),
    "qwen.qwen3_14b": row("Qwen3ModelProvider14B", 8, **QWEN),
    "qwen.qwen3_32b": row("Qwen3ModelProvider32B", 8, 2, **QWEN),
    "qwen.qwen3_30b_a3b": row("Qwen3MoEModelProvider30B_A3B", 4, 2, ep=4, sp=True, **QWEN),
    "qwen.qwen3_235b_a22b": row("Qwen3MoEModelProvider235B_A22B", 4, 16, cp=2, ep=8, sp=True,
                                **{**QWEN, "mbs": 1}),
    "deepseek.deepseek_v2_lite": row("DeepSeekV2LiteModelProvider", ep=8, gbs=512, **DEEPSEEK),
    "deepseek.deepseek_v3": row("DeepSeekV3ModelProvider", 2, 16, ep=64, sp=True, gbs=4096,
                                **DEEPSEEK),
    "nemotronh.nemotronh_8b": row("NemotronHModelProvider8B", 2, sp=True, **NEMOH),
    "nemotronh.nemotronh_47b": row("NemotronHModelProvider47B", 8, sp=True, **NEMOH),
    "nemotronh.nemotronh_56b": row("NemotronHModelProvider56B", 8, sp=True, **NEMOH),
    "tiny.gpt_tiny": row("TinyGPTProvider", seq=64, gbs=8, mbs=4, lr=3e-3, min_lr=3e-4,
                         warmup=3, iters=30),
    "tiny.gpt_small": row("SmallGPTProvider", seq=128, gbs=16, mbs=16, lr=3e-3, min_lr=3e-4,
                          warmup=20, iters=2500),
}

# fine-tuning: LoRA layout (tp, pp, ep, dim, alpha) and the full-SFT layout (tp, pp, ep)
FINETUNE = {
    "llama.llama3_8b": ((1, 1, 1, 8, 16), (2, 1, 1)),
    "llama.llama3_70b": ((8, 1, 1, 16, 32), (8, 4, 1)),
    "llama.llama31_8b": ((1, 1, 1, 8, 16), (2, 1, 1)),
    "llama.llama31_70b": ((8, 1, 1, 16, 32), (8, 4, 1)),
    "llama.llama31_405b": ((4, 8, 1, 16, 32), (8, 16, 1)),
    "llama.llama32_1b": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "llama.llama32_3b": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "qwen.qwen25_500m": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "qwen.qwen25_1p5b": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "qwen.qwen25_7b": ((1, 1, 1, 32, 32), (2, 1, 1)),
    "qwen.qwen25_14b": ((2, 1, 1, 32, 32), (4, 1, 1)),
    "qwen.qwen25_32b": ((4, 1, 1, 32, 32), (8, 2, 1)),
    "qwen.qwen25_72b": ((8, 1, 1, 32, 32), (8, 4, 1)),
    "qwen.qwen3_600m": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "qwen.qwen3_1p7b": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "qwen.qwen3_4b": ((1, 1, 1, 32, 32), (1, 1, 1)),
    "qwen.qwen3_8b": ((1, 1, 1, 32, 32), (2, 1, 1)),
    "qwen.qwen3_14b": ((2, 1, 1, 32, 32), (4, 1, 1)),
    "qwen.qwen3_32b": ((4, 1, 1, 32, 32), (8, 2, 1)),
    "qwen.qwen3_30b_a3b": ((4, 1, 4, 32, 32), (4, 2, 4)),
    "qwen.qwen3_235b_a22b": ((4, 16, 4, 32, 32), (4, 16, 4)),
    "deepseek.deepseek_v2_lite": ((1, 1, 8, 32, 32), (1, 1, 8)),
    "deepseek.deepseek_v3": ((2, 8, 32, 32, 32), (2, 16, 64)),
    "nemotronh.nemotronh_8b": ((1, 1, 1, 32, 32), (2, 1, 1)),
    "nemotronh.nemotronh_47b": ((4, 1, 1, 32, 32), (8, 1, 1)),
    "nemotronh.nemotronh_56b": ((4, 1, 1, 32, 32), (8, 1, 1)),
    "tiny.gpt_tiny": ((1, 1, 1, 8, 16), (1, 1, 1)),
    "tiny.gpt_small": ((1, 1, 1, 16, 32), (1, 1, 1)),
}

LISTED = find_recipes()
PRETRAIN_RECIPES = sorted(r.module for r in LISTED if r.function == "pretrain_config")
FINETUNE_RECIPES = sorted(r.module for r in LISTED if r.function == "finetune_config")


def recipe(module: str, kind: str):
    return getattr(importlib.import_module(f"mbridge_train.recipes.{module}"), f"{kind}_config")


def preset_class(name: str):
    if name == "TinyGPTProvider":
        return importlib.import_module("mbridge_train.recipes.tiny.gpt_tiny").TinyGPTProvider
    if name == "SmallGPTProvider":
        return importlib.import_module("mbridge_train.recipes.tiny.gpt_small").SmallGPTProvider
    return getattr(presets, name)


def world_size_for(model) -> int:
    """The smallest world megatron-core accepts: TP x PP x CP x DP, with the expert-parallel
    group (EP x expert TP) dividing the ranks of one pipeline stage."""
    tp, pp, cp = (model.tensor_model_parallel_size, model.pipeline_model_parallel_size,
                  model.context_parallel_size)
    expert = model.expert_model_parallel_size * (model.expert_tensor_parallel_size or tp)
    dp = expert // math.gcd(tp * cp, expert)
    return tp * pp * cp * dp


def built(module: str, kind: str, **kwargs) -> ConfigContainer:
    if kind == "finetune":
        kwargs.setdefault("pretrained_checkpoint", "/checkpoints/base")
    return recipe(module, kind)(**kwargs)


# ------------------------------------------------------------------ completeness


def test_tables_cover_every_listed_recipe():
    assert PRETRAIN_RECIPES == sorted(PRETRAIN) and FINETUNE_RECIPES == sorted(FINETUNE)


def test_listing_names_every_recipe_function_in_the_package():
    imported = set()
    for info in pkgutil.walk_packages(recipes_pkg.__path__, "mbridge_train.recipes."):
        parts = info.name.split(".")[2:]
        if info.ispkg or any(p.startswith("_") for p in parts) or \
                parts[0] in ("utils", "run_plugins"):
            continue
        module = importlib.import_module(info.name)
        imported |= {f"{'.'.join(parts)}.{name}" for name, value in vars(module).items()
                     if name.endswith("_config") and callable(value)
                     and getattr(value, "__module__", None) == info.name}
    assert imported == {r.name for r in LISTED}
    assert all(r.summary for r in LISTED), [r.name for r in LISTED if not r.summary]


# ------------------------------------------------------------------ build + validate


ALL = [(m, "pretrain") for m in PRETRAIN_RECIPES] + [(m, "finetune") for m in FINETUNE_RECIPES] \
    + [(m, "finetune-full") for m in FINETUNE_RECIPES]


@pytest.mark.parametrize("module, kind", ALL, ids=[f"{m}:{k}" for m, k in ALL])
def test_recipe_builds_and_validates_at_its_world_size(module, kind):
    extra = {"peft": None} if kind == "finetune-full" else {}
    cfg = built(module, kind.split("-")[0], **extra)
    world = world_size_for(cfg.model)
    cfg.validate(world)
    model_parallel = (cfg.model.tensor_model_parallel_size * cfg.model.pipeline_model_parallel_size
                      * cfg.model.context_parallel_size)
    if model_parallel > 1:  # the world size is what makes it valid
        with pytest.raises(ConfigError, match="does not divide the world size"):
            cfg.validate(world + 1)
    cfg.finalize()  # megatron-core's own TransformerConfig checks of the layout
    cfg.validate(world)


ARCHITECTURE_SET_BY_RECIPES = {  # provider fields a recipe may legitimately change
    "seq_length", "tensor_model_parallel_size", "pipeline_model_parallel_size", "pipeline_dtype",
    "virtual_pipeline_model_parallel_size", "context_parallel_size", "expert_model_parallel_size",
    "expert_tensor_parallel_size", "sequence_parallel", "account_for_embedding_in_pipeline_split",
    "account_for_loss_in_pipeline_split", "recompute_granularity", "recompute_method",
    "recompute_num_layers", "pipeline_model_parallel_layout", "cross_entropy_loss_fusion",
    "moe_router_dtype"}


@pytest.mark.parametrize("module", PRETRAIN_RECIPES)
def test_model_is_the_preset_it_names(module):
    expected = preset_class(PRETRAIN[module]["preset"])
    for cfg in (built(module, "pretrain"), built(module, "finetune")):
        assert type(cfg.model) is expected
        fresh = expected()
        changed = {f.name for f in dataclasses.fields(fresh)
                   if getattr(cfg.model, f.name) != getattr(fresh, f.name)}
        assert changed <= ARCHITECTURE_SET_BY_RECIPES, changed - ARCHITECTURE_SET_BY_RECIPES


@pytest.mark.parametrize("module", PRETRAIN_RECIPES)
def test_pretrain_defaults_match_the_table(module):
    want, cfg = PRETRAIN[module], built(module, "pretrain")
    m = cfg.model
    assert (m.tensor_model_parallel_size, m.pipeline_model_parallel_size,
            m.virtual_pipeline_model_parallel_size, m.context_parallel_size,
            m.expert_model_parallel_size, m.sequence_parallel) == \
        (want["tp"], want["pp"], want["vpp"], want["cp"], want["ep"], want["sp"])
    assert m.seq_length == cfg.dataset.sequence_length == want["seq"]
    assert (cfg.train.global_batch_size, cfg.train.micro_batch_size, cfg.train.train_iters) == \
        (want["gbs"], want["mbs"], want["iters"])
    assert (cfg.optimizer.lr, cfg.optimizer.min_lr, cfg.scheduler.lr_warmup_iters) == \
        pytest.approx((want["lr"], want["min_lr"], want["warmup"]))
    assert cfg.scheduler.lr_decay_style == "cosine" and cfg.scheduler.lr_decay_iters is None
    assert cfg.optimizer.use_distributed_optimizer and cfg.dataset.blend is None  # mock data
    if m.pipeline_model_parallel_size > 1:
        assert cfg.mixed_precision is not None or m.pipeline_dtype is not None


@pytest.mark.parametrize("module", FINETUNE_RECIPES)
def test_finetune_defaults_match_the_table(module):
    (tp, pp, ep, dim, alpha), (full_tp, full_pp, full_ep) = FINETUNE[module]
    lora = built(module, "finetune")
    assert (lora.model.tensor_model_parallel_size, lora.model.pipeline_model_parallel_size,
            lora.model.expert_model_parallel_size) == (tp, pp, ep)
    assert type(lora.peft).__name__ == "LoRA" and (lora.peft.dim, lora.peft.alpha) == (dim, alpha)
    assert lora.checkpoint.pretrained_checkpoint == "/checkpoints/base"
    assert not lora.optimizer.use_distributed_optimizer  # adapters: nothing worth sharding
    full = built(module, "finetune", peft=None)
    assert full.peft is None and full.optimizer.use_distributed_optimizer
    assert (full.model.tensor_model_parallel_size, full.model.pipeline_model_parallel_size,
            full.model.expert_model_parallel_size) == (full_tp, full_pp, full_ep)
    if not module.startswith("tiny."):
        assert (lora.optimizer.lr, full.optimizer.lr) == pytest.approx((1e-4, 5e-6))
        assert lora.dataset.seq_length == lora.model.seq_length == 2048
        assert lora.train.global_batch_size == (32 if "405b" in module else 128)
        assert lora.tokenizer.tokenizer_model == lora.model.hf_model_id  # the model's own
    dora = built(module, "finetune", peft="dora")
    assert type(dora.peft).__name__ == "DoRA"


def test_packed_finetune_sizes_packs_to_the_sequence_and_takes_one_pack_per_micro_batch():
    cfg = built("llama.llama3_8b", "finetune", packed_sequence=True, context_parallel_size=2)
    specs = cfg.dataset.packed_sequence_specs
    assert (specs.packed_sequence_size, cfg.model.seq_length) == (4096, 4096)
    assert specs.pad_seq_to_mult == 4 and cfg.train.micro_batch_size == 1
    assert cfg.train.global_batch_size == 8
    cfg.validate(2)


def test_pipelined_finetune_pads_samples_to_the_sequence_length():
    assert built("llama.llama3_70b", "finetune", peft=None).dataset.dataset_kwargs == \
        {"pad_to_max_length": True}
    assert built("llama.llama3_8b", "finetune").dataset.dataset_kwargs is None


def test_output_folders_follow_dir_and_name(tmp_path):
    cfg = built("llama.llama3_8b", "pretrain", dir=str(tmp_path), name="run1")
    assert cfg.checkpoint.save == cfg.checkpoint.load == str(tmp_path / "run1" / "checkpoints")
    assert cfg.logger.tensorboard_dir == str(tmp_path / "run1" / "tb_logs")
    tiny = built("tiny.gpt_tiny", "pretrain")  # writes nothing unless asked
    assert tiny.checkpoint.save is None and tiny.logger.tensorboard_dir is None
    assert built("tiny.gpt_tiny", "pretrain", dir=str(tmp_path)).checkpoint.save == \
        str(tmp_path / "gpt_tiny" / "checkpoints")  # named after the recipe


def test_deepseek_v3_gets_a_pipeline_layout_covering_every_layer():
    layout = built("deepseek.deepseek_v3", "pretrain").model.pipeline_model_parallel_layout
    assert len(layout) == 16 and layout[0][0] == "embedding" and layout[-1][-2:] == ["mtp", "loss"]
    assert sum(stage.count("decoder") for stage in layout) == 61
    assert built("deepseek.deepseek_v3", "pretrain", pipeline_model_parallel_size=3) \
        .model.pipeline_model_parallel_layout is None  # no layout for that shape: even split


# ------------------------------------------------------------------ arguments and overrides

OVERRIDABLE = ["llama.llama3_8b", "qwen.qwen3_30b_a3b", "tiny.gpt_tiny"]


@given(module=st.sampled_from(OVERRIDABLE), kind=st.sampled_from(["pretrain", "finetune"]),
       tp=st.sampled_from([1, 2, 4]), seq=st.sampled_from([256, 1024, 2048, 4096]),
       iters=st.integers(100, 10**6), lr=st.floats(1e-6, 1e-2), mbs=st.sampled_from([1, 2]),
       legacy=st.booleans())
def test_arguments_land_where_megatron_reads_them(module, kind, tp, seq, iters, lr, mbs, legacy):
    tp_name = "tensor_parallelism" if legacy else "tensor_model_parallel_size"
    lr_name = "lr" if kind == "pretrain" or legacy else "finetune_lr"
    cfg = built(module, kind, **{tp_name: tp, lr_name: lr}, seq_length=seq, train_iters=iters,
                micro_batch_size=mbs, global_batch_size=mbs * 16)
    assert cfg.model.tensor_model_parallel_size == tp
    dataset_len = cfg.dataset.sequence_length if kind == "pretrain" else cfg.dataset.seq_length
    assert cfg.model.seq_length == dataset_len == seq
    assert (cfg.train.train_iters, cfg.train.micro_batch_size) == (iters, mbs)
    assert cfg.optimizer.lr == lr


@given(module=st.sampled_from(OVERRIDABLE), iters=st.integers(1000, 10**6),
       tp=st.sampled_from([1, 2]), lr=st.floats(1e-6, 1e-2))
def test_dotted_overrides_on_a_recipe_equal_setting_fields(module, iters, tp, lr):
    cfg = built(module, "pretrain").apply_overrides(
        [f"train.train_iters={iters}", f"model.tensor_model_parallel_size={tp}",
         f"optimizer.lr={lr!r}", "~logger.tensorboard_dir"])
    by_hand = built(module, "pretrain")
    by_hand.train.train_iters, by_hand.model.tensor_model_parallel_size = iters, tp
    by_hand.optimizer.lr, by_hand.logger.tensorboard_dir = lr, None
    assert cfg.to_dict() == by_hand.to_dict()


def test_recipe_arguments_are_checked_by_name():
    from mbridge_train.recipes.spec import RecipeArgumentError

    with pytest.raises(RecipeArgumentError, match="'tensor_model_parallel_size'"):
        built("llama.llama3_8b", "pretrain", tensor_model_paralel_size=2)
    with pytest.raises(RecipeArgumentError, match="not both"):
        built("llama.llama3_8b", "pretrain", tensor_parallelism=2, tensor_model_parallel_size=2)
    with pytest.raises(ConfigError, match="peft.*lora, dora, none"):
        built("llama.llama3_8b", "finetune", peft="qlora")
    signature = inspect.signature(recipe("llama.llama3_70b", "pretrain"))
    assert signature.parameters["tensor_model_parallel_size"].default == 4
    assert "tensor_model_parallel_size=4" in recipe("llama.llama3_70b", "pretrain").__doc__


def test_recipes_do_not_share_mutable_defaults():
    first, second = built("deepseek.deepseek_v3", "pretrain"), built("deepseek.deepseek_v3",
                                                                     "pretrain")
    assert first.mixed_precision is not second.mixed_precision
    first.model.pipeline_model_parallel_layout[0].append("decoder")
    assert len(second.model.pipeline_model_parallel_layout[0]) == 5


def test_data_arguments_become_blends(tmp_path):
    from mbridge_train.recipes.utils.dataset_utils import blend_fields

    cfg = built("llama.llama3_8b", "pretrain", data_paths=["30", "a_doc", "70", "b_doc"])
    assert (cfg.dataset.blend, cfg.dataset.blend_weights) == (["a_doc", "b_doc"], [30.0, 70.0])
    assert built("llama.llama3_8b", "pretrain", data_paths=["a"], mock=True).dataset.blend is None
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["t1", "t2"], "valid": ["v"]}))
    fields = blend_fields(per_split_data_args_path=str(split))
    assert fields["blend_per_split"] == [["t1", "t2"], ["v"], None] and fields["split"] is None
    assert blend_fields(train_data_path=["t"], test_data_path=["x"])["blend_per_split"] == \
        [["t"], None, ["x"]]
    with pytest.raises(ConfigError, match="one way"):
        blend_fields(data_paths=["a"], train_data_path=["b"])


# ------------------------------------------------------------------ one module, two names


@pytest.mark.parametrize("module", sorted(set(PRETRAIN_RECIPES) | set(FINETUNE_RECIPES)))
def test_mbridge_recipes_is_the_same_module(module):
    ours = importlib.import_module(f"mbridge.recipes.{module}")
    theirs = importlib.import_module(f"mbridge_train.recipes.{module}")
    assert ours is theirs
    assert ours.pretrain_config is theirs.pretrain_config
    assert ours.finetune_config is theirs.finetune_config
    family, model = module.split(".")
    package = importlib.import_module(f"mbridge.recipes.{family}")
    assert getattr(package, f"{model}_pretrain_config") is theirs.pretrain_config  # newer Bridge
    assert theirs.__spec__.name == theirs.__name__ == f"mbridge_train.recipes.{module}"


def test_bridge_recipe_utils_path_still_works():
    from mbridge.recipes.utils.optimizer_utils import distributed_fused_adam_with_cosine_annealing
    from mbridge_train.optim import distributed_fused_adam_with_cosine_annealing as original

    assert distributed_fused_adam_with_cosine_annealing is original
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mbridge.recipes.llama.llama9_1t")


# ------------------------------------------------------------------ readable functions


ALL_FUNCTIONS = [(m, "pretrain") for m in PRETRAIN_RECIPES] + \
    [(m, "finetune") for m in FINETUNE_RECIPES]


@pytest.mark.parametrize("module, kind", ALL_FUNCTIONS, ids=[f"{m}:{k}" for m, k in ALL_FUNCTIONS])
def test_recipe_is_the_function_written_in_its_module(module, kind):
    """Go-to-definition lands on a body that builds the config (not a wrapper around a stub)."""
    function = recipe(module, kind)
    source = inspect.getsource(function)
    assert not hasattr(function, "__wrapped__")
    assert inspect.getsourcefile(function) == inspect.getsourcefile(
        importlib.import_module(f"mbridge_train.recipes.{module}"))
    assert f"def {kind}_config(**arguments) -> ConfigContainer:" in source
    body = source.split('"""')[-1]  # what follows the docstring
    assert f"build_{kind}(" in body and ".bind(arguments)" in body and "return" in body
    assert function.spec.provider is type(function().model if kind == "pretrain" else
                                          function(pretrained_checkpoint="/c").model)


def test_bad_setting_in_a_recipe_is_one_config_error_naming_the_field(monkeypatch):
    from mbridge_train.recipes.deepseek import deepseek_v2_lite

    monkeypatch.setitem(deepseek_v2_lite.SETTINGS, "model.recompute_granularty", "full")
    with pytest.raises(ConfigError) as error:
        deepseek_v2_lite.pretrain_config()
    assert error.value.fields == ["model.recompute_granularty"]
    assert "\n" not in str(error.value) and "recompute_granularity" in str(error.value)
    monkeypatch.delitem(deepseek_v2_lite.SETTINGS, "model.recompute_granularty")
    monkeypatch.setitem(deepseek_v2_lite.SETTINGS, "model.recompute_num_layers", "one")
    with pytest.raises(ConfigError, match="integer") as error:
        deepseek_v2_lite.pretrain_config()
    assert error.value.fields == ["model.recompute_num_layers"]


def test_settings_are_coerced_to_the_field_type_and_applied_all_or_nothing():
    from mbridge_config.overrides import apply_overrides

    cfg = built("tiny.gpt_tiny", "pretrain")
    assert apply_overrides(cfg, {"train.train_iters": "12", "model.params_dtype": "bf16"}) is cfg
    assert cfg.train.train_iters == 12 and cfg.model.params_dtype is torch.bfloat16
    with pytest.raises(ConfigError):
        apply_overrides(cfg, {"train.train_iters": 40, "train.nope": 1})
    assert cfg.train.train_iters == 12


@given(module=st.sampled_from(OVERRIDABLE), kind=st.sampled_from(["pretrain", "finetune"]),
       iters=st.integers(1, 10**6), tp=st.sampled_from([1, 2, 4]),
       dtype=st.sampled_from(["bf16", "fp16", "torch.float32"]))
def test_recipe_arguments_as_text_equal_typed_arguments(module, kind, iters, tp, dtype):
    """What a command line passes (text) builds the same config as Python values."""
    as_text = built(module, kind, train_iters=str(iters), tensor_parallelism=str(tp),
                    pipeline_dtype=dtype, sequence_parallel="true")
    typed = built(module, kind, train_iters=iters, tensor_model_parallel_size=tp,
                  pipeline_dtype=getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}.get(
                      dtype, "float32")), sequence_parallel=True)
    assert as_text.to_dict() == typed.to_dict()


def test_a_recipe_argument_of_the_wrong_type_names_it():
    from mbridge_train.recipes.spec import RecipeArgumentError

    with pytest.raises(RecipeArgumentError, match="expected an integer") as error:
        built("tiny.gpt_tiny", "finetune", seq_length="long")
    assert error.value.fields == ["seq_length"]
    assert isinstance(error.value, TypeError) and isinstance(error.value, ConfigError)
    with pytest.raises(RecipeArgumentError) as error:
        built("tiny.gpt_tiny", "finetune", lr="fast")  # the older name is the one named
    assert error.value.fields == ["lr"]


# ------------------------------------------------------------------ run names (issue 18)


def test_runs_are_named_after_their_recipe_so_recipes_never_share_checkpoints(tmp_path):
    folders = {}
    for module, kind in ALL_FUNCTIONS:
        model = module.split(".")[1]
        cfg = built(module, kind, dir=str(tmp_path))
        name = model if kind == "pretrain" else f"{model}_finetune"
        assert inspect.signature(recipe(module, kind)).parameters["name"].default == name
        assert cfg.checkpoint.save == cfg.checkpoint.load == str(tmp_path / name / "checkpoints")
        assert cfg.logger.tensorboard_dir == str(tmp_path / name / "tb_logs")
        folders[(module, kind)] = cfg.checkpoint.save
        again = built(module, kind, dir=str(tmp_path))  # the same recipe: the same folder
        assert again.checkpoint.load == cfg.checkpoint.save
    assert len(set(folders.values())) == len(folders)
    default = built("llama.llama32_3b", "pretrain")  # no dir: ./nemo_experiments/<recipe>
    assert default.checkpoint.save.endswith("nemo_experiments/llama32_3b/checkpoints")
    assert built("llama.llama32_3b", "pretrain", dir=str(tmp_path), name=None).checkpoint.save \
        == folders[("llama.llama32_3b", "pretrain")]
    assert built("llama.llama32_3b", "pretrain", dir=str(tmp_path), name="mine") \
        .checkpoint.save == str(tmp_path / "mine" / "checkpoints")


def _recipe_runs_in_one_dir(rank, world, tmp):
    """gpt_tiny stopped after 2 of 4 steps, gpt_tiny again (resumes), then gpt_small in the same
    dir (its own folder: starts at step 1 instead of loading gpt_tiny's weights)."""
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step
    from mbridge_train.recipes.tiny import gpt_small, gpt_tiny

    small = dict(dir=str(tmp), train_iters=4, save_interval=2, global_batch_size=2,
                 micro_batch_size=2, seq_length=32, eval_iters=1, lr_warmup_iters=1)
    steps = []
    for make, stop in ((gpt_tiny.pretrain_config, 2), (gpt_tiny.pretrain_config, None),
                       (gpt_small.pretrain_config, 1)):
        cfg = make(**small)
        cfg.train.exit_interval, cfg.logger.log_interval = stop, 1
        run = pretrain(cfg, forward_step)
        steps.append([h["step"] for h in run.history if "split" not in h])
    return steps


@pytest.mark.slow
@pytest.mark.multiproc
def test_same_recipe_resumes_and_another_recipe_starts_afresh_in_the_same_dir(tmp_path):
    (steps,) = run_ranks(_recipe_runs_in_one_dir, 1, tmp_path)
    assert steps == [[1, 2], [3, 4], [1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt_small", "gpt_tiny"]
