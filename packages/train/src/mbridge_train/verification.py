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
