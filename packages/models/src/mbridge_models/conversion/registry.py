"""The architectures mbridge converts, one module each under ``architectures/``.

An architecture module defines ``ARCHITECTURE = Architecture(...)``: its weight mappings and its
config translation. Modules are discovered, so adding an architecture is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.mapping import WeightMapping, _regex


@dataclass(frozen=True)
class Architecture:
    """One Hugging Face architecture: names, mappings and config translation.

    ``when`` (per mapping, keyed by the megatron pattern) names a provider bool field that must
    be true for the tensor to exist, ``"!field"`` one that must be false; ``"moe_layer"`` /
    ``"dense_layer"`` say the tensor exists only in MoE / dense-MLP layers (``moe_layer_freq``).
    """

    name: str
    hf_architecture: str  # the transformers class, e.g. "LlamaForCausalLM"
    model_types: tuple[str, ...]
    mappings: tuple[WeightMapping, ...]
    provider_fields: Callable[[dict], dict]  # HF config dict -> provider fields
    hf_config: Callable[[Any], dict]  # provider -> HF config dict
    when: dict[str, str] = field(default_factory=dict)
    ignored_hf: tuple[str, ...] = ("model.layers.*.self_attn.rotary_emb.inv_freq",)
    provider_class: Callable[..., Any] | None = None  # None: GPTModelProvider

    def mapping_for(self, megatron_name: str) -> tuple[WeightMapping, tuple[str, ...]]:
        for mapping in self.mappings:
            values = mapping.match(megatron_name)
            if values is not None:
                return mapping, values
        raise ConversionError(f"megatron tensor {megatron_name} has no {self.name} Hugging Face "
                              "mapping (layer spec or provider fields the mapping lacks?)")

    def present(self, mapping: WeightMapping, provider: Any, layer: int | None = None) -> bool:
        condition = self.when.get(mapping.megatron)
        if condition is None:
            return True
        if condition in ("moe_layer", "dense_layer"):
            return layer is None or is_moe_layer(provider, layer) == (condition == "moe_layer")
        negate = condition.startswith("!")
        return bool(getattr(provider, condition.lstrip("!"))) != negate

    def entries(self, provider: Any) -> Iterator[tuple[WeightMapping, tuple[str, ...]]]:
        """Every (mapping, wildcard values) of a whole model, in Hugging Face order (layer by
        layer; a second wildcard is the expert index, over every expert of the model). Tied
        output weights are not entries: the embedding is."""
        layered = [m for m in self.mappings if m.wildcards and self.present(m, provider)]
        flat = [m for m in self.mappings if not m.wildcards and self.present(m, provider)]
        first = [m for m in flat if "embedding" in m.megatron]
        last = [m for m in flat if m not in first]
        for mapping in first:
            yield mapping, ()
        for layer in range(provider.num_layers):
            for mapping in layered:
                if not self.present(mapping, provider, layer):
                    continue
                if mapping.wildcards == 1:
                    yield mapping, (str(layer),)
                    continue
                for expert in range(provider.num_moe_experts or 0):
                    yield mapping, (str(layer), str(expert))
        for mapping in last:
            yield mapping, ()

    def hf_names(self, provider: Any) -> list[str]:
        return [n for m, v in self.entries(provider) for n in m.hf_names(v)]

    def is_ignored(self, hf_name: str) -> bool:
        return any(_regex(p).match(hf_name) for p in self.ignored_hf)


def is_moe_layer(provider: Any, layer: int) -> bool:
    """Whether 0-based ``layer`` has a routed MLP (megatron's ``moe_layer_freq``: an int period
    or a 0/1 list)."""
    if not provider.num_moe_experts:
        return False
    freq = provider.moe_layer_freq
    if isinstance(freq, int):
        return layer % freq == 0
    return bool(freq[layer])


_REGISTRY: dict[str, Architecture] = {}


def _discover() -> dict[str, Architecture]:
    if not _REGISTRY:
        from mbridge_models.conversion import architectures

        for info in pkgutil.iter_modules(architectures.__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{architectures.__name__}.{info.name}")
            arch = module.ARCHITECTURE
            for model_type in arch.model_types:
                _REGISTRY[model_type] = arch
    return _REGISTRY


def list_supported_models() -> list[str]:
    """The Hugging Face ``model_type`` values mbridge converts, sorted."""
    return sorted(_discover())


def get_architecture(config_or_model_type: Any) -> Architecture:
    """The architecture of a HF config (dict / transformers config) or a model_type string."""
    model_type = config_or_model_type
    if not isinstance(model_type, str):
        from mbridge_models.conversion.hf_config import as_dict

        model_type = as_dict(config_or_model_type).get("model_type")
    arch = _discover().get(model_type)
    if arch is None:
        raise ConversionError(f"Hugging Face model_type {model_type!r} is not supported; "
                              f"supported: {', '.join(list_supported_models())}")
    return arch


def supports(config: Any) -> bool:
    try:
        get_architecture(config)
    except ConversionError:
        return False
    return True


def provider_from_hf_config(config: Any, **overrides: Any):
    """A GPTModelProvider with the architecture of a Hugging Face config (a transformers config
    object or its dict); ``overrides`` set provider fields (parallelism, precision, spec)."""
    from mbridge_models.conversion.hf_config import as_dict
    from mbridge_models.gpt_provider import GPTModelProvider

    config = as_dict(config)
    arch = get_architecture(config)
    fields = arch.provider_fields(config)
    fields.update(overrides)
    return (arch.provider_class or GPTModelProvider)(**fields)


__all__ = ["Architecture", "WeightMapping", "get_architecture", "list_supported_models",
           "provider_from_hf_config", "supports"]
