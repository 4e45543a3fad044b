"""The PEFT method a fine-tuning recipe names by string ("lora", "dora", or none)."""

from __future__ import annotations

from mbridge_config.errors import ConfigError

PEFT_SCHEMES = ("lora", "dora", "none")


def default_peft_config(peft_scheme, **fields):
    """LoRA() / DoRA() with the usual targets (linear_qkv, linear_proj, linear_fc1, linear_fc2)
    and ``fields`` set on it; None for None / "none"; a PEFT instance is returned as given.

    Recipes accept a string so that a command line (``-a peft=dora``) can choose the method."""
    if peft_scheme is None or not isinstance(peft_scheme, str):
        return peft_scheme
    scheme = peft_scheme.strip().lower()
    if scheme == "none":
        return None
    if scheme not in PEFT_SCHEMES:
        raise ConfigError(f"unknown PEFT scheme {peft_scheme!r}; choose one of "
                          f"{', '.join(PEFT_SCHEMES)} (or pass a PEFT object)", field="peft")
    from mbridge_peft import DoRA, LoRA

    return (LoRA if scheme == "lora" else DoRA)(**fields)
