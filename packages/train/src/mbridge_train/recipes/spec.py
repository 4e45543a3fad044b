"""What a recipe takes and what one model's recipe fixes: typed, frozen, one home.

``PretrainArguments`` / ``FinetuneArguments`` are the keyword arguments of every pretraining /
fine-tuning recipe, with the defaults Megatron Bridge's recipes share. A model's spec
(``PretrainSpec`` / ``FinetuneSpec``) is the same fields with that model's values, plus its preset
class; a family with defaults of its own (Qwen, Nemotron-H) subclasses the spec. A recipe is then
an ordinary function::

    PRETRAIN = PretrainSpec(__name__, Llama3ModelProvider70B, tensor_model_parallel_size=4)

    @recipe(PRETRAIN)
    def pretrain_config(**arguments) -> ConfigContainer:
        '''Llama 3 70B pretraining: ...'''
        return build_pretrain(PRETRAIN.bind(arguments))

``spec.bind(arguments)`` is the argument binding: it maps the older Megatron Bridge spellings
(``aliases``), rejects unknown names with the closest valid one, coerces each value to the field's
type (``pipeline_dtype="bf16"`` is ``torch.bfloat16``: what a command line passes works from
Python too) and returns the spec with those values. ``recipe(spec)`` only describes the function:
``inspect.signature`` / ``help()`` show every argument with this model's default.

Without ``name`` a run is named after its recipe (``llama32_3b``, ``llama32_3b_finetune``), so
two recipes sharing ``dir`` never resume each other's checkpoints, while the same recipe run
again in the same ``dir`` resumes its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch

from mbridge_config import CommOverlapConfig, ConfigContainer, ConfigError, MixedPrecisionConfig
from mbridge_config.serialization import field_types, field_value

LEGACY_NAMES = MappingProxyType({
    "tensor_parallelism": "tensor_model_parallel_size",
    "pipeline_parallelism": "pipeline_model_parallel_size",
    "pipeline_parallelism_dtype": "pipeline_dtype",
    "virtual_pipeline_parallelism": "virtual_pipeline_model_parallel_size",
    "context_parallelism": "context_parallel_size",
    "sequence_parallelism": "sequence_parallel",
    "expert_parallelism": "expert_model_parallel_size",
    "expert_tensor_parallelism": "expert_tensor_parallel_size",
})
"""Argument names of Megatron Bridge's first recipe modules -> today's (the provider's)."""


class RecipeArgumentError(ConfigError, TypeError):
    """A recipe argument that does not exist or has a value of the wrong type; the message names
    it (and the closest valid name). A TypeError, as for any function, and a ConfigError."""


# ------------------------------------------------------------------ the arguments


@dataclass(frozen=True, kw_only=True)
class _Shared:
    """Arguments of both kinds of recipe."""

    dir: str | None = None
    name: str | None = None  # None: the recipe's own name (see the module docstring)
    tokenizer_model: str | None = None
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    pipeline_dtype: torch.dtype | None = None
    virtual_pipeline_model_parallel_size: int | None = None
    context_parallel_size: int = 1
    expert_model_parallel_size: int = 1
    expert_tensor_parallel_size: int | None = None  # None: follows tensor parallelism
    sequence_parallel: bool = False
    micro_batch_size: int = 1
    lr_decay_iters: int | None = None  # None: train_iters
    eval_iters: int = 32
    precision_config: MixedPrecisionConfig | str | None = "bf16_mixed"
    comm_overlap_config: CommOverlapConfig | None = None

    aliases: ClassVar[Mapping[str, str]] = LEGACY_NAMES
    kind: ClassVar[str]


@dataclass(frozen=True, kw_only=True)
class PretrainArguments(_Shared):
    """The keyword arguments of every ``pretrain_config``; data is mock unless paths are given."""

    data_paths: list[str] | None = None
    data_args_path: str | None = None
    train_data_path: list[str] | None = None
    valid_data_path: list[str] | None = None
    test_data_path: list[str] | None = None
    per_split_data_args_path: str | None = None
    mock: bool = False
    use_megatron_fsdp: bool = False
    account_for_embedding_in_pipeline_split: bool = False
    account_for_loss_in_pipeline_split: bool = False
    train_iters: int = 1_168_251
    global_batch_size: int = 512
    seq_length: int = 8192
    lr: float = 3e-4
    min_lr: float = 3e-5
    adam_eps: float = 1e-5
    lr_warmup_iters: int = 2000
    eval_interval: int = 2000
    save_interval: int = 2000

    kind: ClassVar[str] = "pretrain"


@dataclass(frozen=True, kw_only=True)
class FinetuneArguments(_Shared):
    """The keyword arguments of every ``finetune_config``. None for the batch size, sequence
    length and learning rate means: chosen from ``packed_sequence`` and ``peft``."""

    pretrained_checkpoint: str | None = None
    peft: Any = "lora"  # "lora", "dora", None / "none" (full fine-tune) or a PEFT object
    packed_sequence: bool = False
    dataset_root: str | None = None
    train_iters: int = 1000
    global_batch_size: int | None = None  # 128, or 8 packed
    seq_length: int | None = None  # 2048, or 4096 packed
    finetune_lr: float | None = None  # 1e-4 with PEFT, 5e-6 without
    min_lr: float = 0.0
    lr_warmup_iters: int = 50
    eval_interval: int = 30
    save_interval: int = 50

    aliases: ClassVar[Mapping[str, str]] = MappingProxyType({**LEGACY_NAMES, "lr": "finetune_lr"})
    kind: ClassVar[str] = "finetune"


def argument_names(cls: type) -> list[str]:
    """The recipe arguments of an arguments or spec class, in signature order."""
    arguments = PretrainArguments if issubclass(cls, PretrainArguments) else FinetuneArguments
    return [f.name for f in dataclasses.fields(arguments)]


# ------------------------------------------------------------------ one model's spec

S = TypeVar("S", bound="_Spec")


@dataclass(frozen=True)
class _Spec:
    """module: the recipe module's ``__name__`` (names the run and the errors);
    provider: the preset class; outputs_without_dir=False: no checkpoints or TensorBoard
    unless ``dir`` is given (the tiny recipes)."""

    module: str
    provider: Callable[..., Any]
    outputs_without_dir: bool = field(default=True, kw_only=True)

    @property
    def run_name(self) -> str:
        """``name``, or the recipe's own: ``llama32_3b`` / ``llama32_3b_finetune``."""
        if self.name is not None:
            return self.name
        model = self.module.rpartition(".")[2]
        return model if self.kind == "pretrain" else f"{model}_{self.kind}"

    @property
    def where(self) -> str:
        return f"{self.module}.{self.kind}_config"

    def bind(self: S, arguments: Mapping[str, Any]) -> S:
        """This spec with the given recipe arguments (aliases mapped, types coerced)."""
        return dataclasses.replace(self, **self._with_defaults(self._resolve(arguments)))

    def _with_defaults(self, given: dict[str, Any]) -> dict[str, Any]:
        """The given arguments plus defaults that depend on them (none here)."""
        return given

    def _resolve(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        names = argument_names(type(self))
        given = {}
        for key, value in arguments.items():
            new = self.aliases.get(key, key)
            if new != key and new in arguments:
                raise RecipeArgumentError(f"{self.where}: give {new} or its older name {key}, "
                                          "not both")
            if new not in names:
                close = difflib.get_close_matches(key, names + list(self.aliases), n=3,
                                                  cutoff=0.5)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise RecipeArgumentError(f"{self.where}() has no argument {key!r}{hint}")
            given[new] = _coerce(type(self), new, value, key)
        return given


def _coerce(cls: type, name: str, value: Any, given_as: str) -> Any:
    try:
        return field_value(cls, name, value, given_as)
    except ConfigError as error:
        raise RecipeArgumentError(error.problems) from None


@dataclass(frozen=True)
class PretrainSpec(_Spec, PretrainArguments):
    """One model's pretraining recipe: its preset and its values for the arguments."""


@dataclass(frozen=True)
class FinetuneSpec(_Spec, FinetuneArguments):
    """One model's fine-tuning recipe. peft_fields: set on the LoRA / DoRA made from a ``peft``
    string (dim, alpha, target_modules); full_sft: argument defaults that replace this spec's
    when ``peft`` is None (a full fine-tune usually needs more model parallelism)."""

    peft_fields: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    full_sft: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self):
        unknown = sorted(set(self.full_sft) - set(argument_names(FinetuneArguments)))
        if unknown:
            raise TypeError(f"{self.module}: full_sft names no recipe argument: "
                            f"{', '.join(unknown)}")

    def _with_defaults(self, given: dict[str, Any]) -> dict[str, Any]:
        return {**self.full_sft, **given} if is_full_sft(given.get("peft", self.peft)) else given


def is_full_sft(peft: Any) -> bool:
    return peft is None or (isinstance(peft, str) and peft.strip().lower() == "none")


# ------------------------------------------------------------------ describing the function

F = TypeVar("F", bound=Callable[..., ConfigContainer])


def recipe(spec: _Spec) -> Callable[[F], F]:
    """Describe a recipe function by its spec: its signature shows every argument with this
    model's default, its docstring gains what this model sets differently. The function itself
    is returned unchanged (its body is what runs)."""

    def describe(function: F) -> F:
        if function.__module__ != spec.module:  # a spec copied from another module
            raise TypeError(f"{function.__module__}.{function.__name__}: described by a spec "
                            f"of {spec.module}")
        function.__signature__ = signature(spec)
        function.__doc__ = _document(function.__doc__, spec)
        function.spec = spec
        return function

    return describe


def signature(spec: _Spec) -> inspect.Signature:
    """Keyword-only parameters with the spec's values as defaults (``name``: the run name)."""
    hints = field_types(type(spec))
    return inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                           default=spec.run_name if name == "name" else getattr(spec, name),
                           annotation=hints[name]) for name in argument_names(type(spec))],
        return_annotation="ConfigContainer")


def _document(doc: str | None, spec: _Spec) -> str:
    """The docstring plus the defaults this model changes, so help() shows what differs."""
    base = PretrainArguments() if spec.kind == "pretrain" else FinetuneArguments()
    changed = {n: getattr(spec, n) for n in argument_names(type(spec))
               if n not in ("name",) and getattr(spec, n) != getattr(base, n)}
    lines = [inspect.cleandoc(doc or "")]
    if changed:
        lines.append("Defaults for this model: " + ", ".join(
            f"{k}={_short(v)}" for k, v in changed.items()) + ".")
    if getattr(spec, "full_sft", None):
        lines.append("With peft=None (full fine-tune): " + ", ".join(
            f"{k}={_short(v)}" for k, v in spec.full_sft.items()) + ".")
    lines.append(f"Runs are named {spec.run_name!r} unless ``name`` is given. Every argument: "
                 f"mbridge_train.recipes.spec.{type(base).__name__}.")
    return "\n\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, CommOverlapConfig):
        set_fields = {k: v for k, v in vars(value).items() if v not in (None, False)}
        return f"CommOverlapConfig({', '.join(f'{k}={v}' for k, v in set_fields.items())})"
    if isinstance(value, MixedPrecisionConfig):
        return "MixedPrecisionConfig(...)"
    return repr(value)
