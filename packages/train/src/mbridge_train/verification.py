"""``weights_verification_table(bridge, model)``: every exported tensor against the Hugging Face
checkpoint it came from (name, shape, dtype, max |difference|, match), one row per tensor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs_diff: float | None  # None: the checkpoint has no such tensor
    matches: bool


class VerificationTable:
    """Rows of a weight check; ``str()`` is a fixed-width table, ``all_match`` the verdict."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    @property
    def all_match(self) -> bool:
        return all(row.matches for row in self.rows)

    def mismatches(self) -> list[Row]:
        return [row for row in self.rows if not row.matches]

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [6])
        lines = [f"{'tensor':<{width}}  {'shape':<18} {'dtype':<9} {'max|diff|':>10}  match"]
        for r in self.rows:
            diff = "missing" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}"
            lines.append(f"{r.name:<{width}}  {str(r.shape):<18} {r.dtype:<9} {diff:>10}  "
                         f"{'yes' if r.matches else 'NO'}")
        return "\n".join(lines)


def weights_verification_table(bridge, model, atol: float = 0.0) -> VerificationTable:
    """Export ``model`` through ``bridge`` and compare each tensor with the bridge's Hugging
    Face folder (collective, like export_hf_weights)."""
    import torch

    from mbridge_models.conversion.errors import ConversionError
    from mbridge_models.conversion.hf_io import HFWeights

    if bridge.hf_path is None:
        raise ConversionError("weights_verification_table: the bridge has no Hugging Face folder "
                              "to compare with (use AutoBridge.from_hf_pretrained)")
    reference = HFWeights(bridge.hf_path)
    rows = []
    for name, tensor in bridge.export_hf_weights(model):
        if name not in reference:
            rows.append(Row(name, tuple(tensor.shape), str(tensor.dtype)[6:], None, False))
            continue
        original = reference.get(name)
        same_shape = tuple(original.shape) == tuple(tensor.shape)
        diff = ((tensor.float() - original.float()).abs().max().item() if same_shape
                else float("inf"))
        rows.append(Row(name, tuple(tensor.shape), str(tensor.dtype)[6:], diff,
                        same_shape and diff <= atol and tensor.dtype == original.dtype))
    return VerificationTable(rows)


# ---------------------------------------------------------------------- the logit parity gate


@dataclass(frozen=True)
class ParityReport:
    """HF model vs Megatron model on the same prompts: max |logit diff|, each decoder layer's
    max |hidden-state diff| and the first layer beyond tolerance (None: all within)."""

    max_logit_diff: float
    layer_diffs: tuple[float, ...]
    first_divergent_layer: int | None
    tolerance: float
    logits_ok: bool

    @property
    def passed(self) -> bool:
        return self.logits_ok and self.first_divergent_layer is None

    def __str__(self) -> str:
        verdict = "match" if self.passed else "MISMATCH"
        where = ("" if self.first_divergent_layer is None else
                 f"; first divergent layer: {self.first_divergent_layer} (HF model.layers."
                 f"{self.first_divergent_layer} vs megatron decoder.layers."
                 f"{self.first_divergent_layer}, max |hidden diff| "
                 f"{self.layer_diffs[self.first_divergent_layer]:.3g})")
        return (f"parity {verdict}: max |logit diff| {self.max_logit_diff:.3g} "
                f"(tolerance {self.tolerance:g}){where}")

    def check(self, what: str = "conversion") -> "ParityReport":
        """Raise ConversionError (one line, the report) unless the two models agree."""
        from mbridge_models.conversion.errors import ConversionError

        if not self.passed:
            raise ConversionError(f"{what}: {self}")
        return self


def fixed_prompts(vocab_size: int, batch: int = 2, length: int = 16) -> "torch.Tensor":
    """Deterministic token ids (the same on every run and machine) inside the vocabulary."""
    import torch

    return torch.randint(0, vocab_size, (batch, length),
                         generator=torch.Generator().manual_seed(1234))


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _within(diff: float, reference, atol: float) -> bool:
    return diff <= atol * max(1.0, reference.abs().max().item())


def compare_models(hf_model, megatron_model, input_ids, vocab_size: int,
                   atol: float = 1e-3) -> ParityReport:
    """Run both models (fp32 recommended) on ``input_ids``; forward hooks catch each decoder
    layer's output on both sides. A difference counts when it exceeds ``atol`` times
    max(1, max |HF value|) of that tensor."""
    import torch

    from mbridge_models.conversion.weights import unwrap

    hf_layers = hf_model.get_decoder().layers
    mg_layers = unwrap(megatron_model).decoder.layers
    if len(hf_layers) != len(mg_layers):
        from mbridge_models.conversion.errors import ConversionError

        raise ConversionError(f"the HF model has {len(hf_layers)} decoder layers, the Megatron "
                              f"model {len(mg_layers)}")
    hf_out: list = [None] * len(hf_layers)
    mg_out: list = [None] * len(mg_layers)
    hooks = []
    for store, layers in ((hf_out, hf_layers), (mg_out, mg_layers)):
        for i, layer in enumerate(layers):
            hooks.append(layer.register_forward_hook(
                lambda _m, _a, out, i=i, store=store: store.__setitem__(i, _first(out).detach())))
    try:
        with torch.no_grad():
            expected = hf_model(input_ids).logits.float()
            got = megatron_model(input_ids)[..., :vocab_size].float()
    finally:
        for hook in hooks:
            hook.remove()
    diffs = []
    first = None
    for i, (ref, mine) in enumerate(zip(hf_out, mg_out)):
        mine = mine.transpose(0, 1)  # megatron is [sequence, batch, hidden]
        diff = ((mine.float() - ref.float()).abs().max().item() if mine.shape == ref.shape
                else float("inf"))
        diffs.append(diff)
        if first is None and not _within(diff, ref, atol):
            first = i
    logit_diff = (got - expected).abs().max().item()
    return ParityReport(logit_diff, tuple(diffs), first, atol,
                        _within(logit_diff, expected, atol))


def verify_conversion(hf_dir, megatron_ckpt, atol: float = 1e-3, input_ids=None) -> ParityReport:
    """Load the Hugging Face folder with transformers and the Megatron checkpoint (save root or
    iter folder) with mbridge, both fp32 on this process, and compare them on fixed prompts.
    Returns the report; ``.check()`` raises when they disagree."""
    import torch

    from mbridge_models.conversion.errors import ConversionError

    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise ConversionError("the parity check runs the Hugging Face model and needs "
                              "transformers: pip install 'mbridge-train[hf]'") from None
    from mbridge_train.auto_bridge import (AutoBridge, _check_same_architecture,
                                           _checkpoint_directory, _single_process)
    from mbridge_train.checkpointing import load_pretrained_weights
    from mbridge_train.hf_assets import assets_of

    bridge = AutoBridge.from_hf_pretrained(hf_dir, torch_dtype=torch.float32)
    directory = _checkpoint_directory(megatron_ckpt)
    assets = assets_of(directory)
    if assets is not None:
        _check_same_architecture(bridge, assets / "config.json", directory)
    vocab = int(bridge.hf_config["vocab_size"])
    ids = fixed_prompts(vocab) if input_ids is None else input_ids
    hf_model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    with _single_process("verify_conversion"):
        provider = bridge.to_megatron_provider(load_weights=False, use_cpu_initialization=True,
                                               seq_length=max(ids.shape[1], 1),
                                               perform_initialization=False)
        provider.initialize_model_parallel(seed=0)
        model = provider.provide().eval()
        load_pretrained_weights(str(directory), [model])
        return compare_models(hf_model, model, ids, vocab, atol=atol)


def publish_verified(target, write, check):
    """``write(staging)`` then ``check(staging)`` inside a temp folder beside ``target``; only
    when the check passes is the result renamed to ``target``, so a failed conversion or a
    failed parity check leaves nothing there."""
    import os
    from pathlib import Path

    from mbridge_models.conversion.hf_io import publish

    def build(tmp: Path) -> None:
        staging = tmp / "staging"
        write(staging)
        check(staging)
        for entry in os.listdir(staging):
            os.replace(staging / entry, tmp / entry)
        staging.rmdir()

    return publish(Path(target), build)


def import_verified(hf_dir, megatron_path, atol: float = 1e-3, torch_dtype=None,
                    show_progress: bool = False, report=print):
    """``AutoBridge.import_ckpt`` gated by the parity check: nothing at ``megatron_path``
    unless the imported checkpoint reproduces the HF model's logits and hidden states."""
    from mbridge_train.auto_bridge import AutoBridge

    def check(staging):
        result = verify_conversion(hf_dir, staging, atol=atol)
        report(str(result))
        result.check(f"import {hf_dir}")

    return publish_verified(megatron_path, lambda staging: AutoBridge.import_ckpt(
        hf_dir, staging, torch_dtype=torch_dtype, show_progress=show_progress), check)


def export_verified(megatron_path, hf_dir, bridge=None, atol: float = 1e-3, report=print,
                    **export_kwargs):
    """``export_ckpt`` gated by the parity check (see import_verified)."""
    from mbridge_train.auto_bridge import AutoBridge

    bridge = bridge if bridge is not None else AutoBridge

    def check(staging):
        result = verify_conversion(staging, megatron_path, atol=atol)
        report(str(result))
        result.check(f"export {megatron_path}")

    return publish_verified(hf_dir, lambda staging: bridge.export_ckpt(
        megatron_path, staging, **export_kwargs), check)
