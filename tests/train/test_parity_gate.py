"""The parity gate: `mbridge convert import|export --verify` and `mbridge convert verify` run the
HF and the Megatron model on fixed prompts; a conversion that breaks one layer is refused, the
layer is named, and nothing is written to the target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from multirank import run_ranks

pytestmark = pytest.mark.multiproc

BROKEN = 1  # the decoder layer the corrupted conversions perturb


def _hf_llama(directory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=32, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(directory)


def _corrupt_import():
    """Loading adds noise to one layer's MLP output weights after a correct load."""
    from mbridge_models.conversion import weights

    original = weights.load_hf_weights

    def broken(model, *args, **kwargs):
        original(model, *args, **kwargs)
        chunk = weights.unwrap(model[0] if isinstance(model, list) else model)
        with torch.no_grad():
            chunk.decoder.layers[BROKEN].mlp.linear_fc2.weight.add_(0.5)

    weights.load_hf_weights = broken


def _corrupt_export():
    from mbridge_models.conversion import weights

    original = weights.export_hf_weights

    def broken(*args, **kwargs):
        for name, tensor in original(*args, **kwargs):
            if name == f"model.layers.{BROKEN}.self_attn.o_proj.weight":
                tensor = tensor + 0.5
            yield name, tensor

    weights.export_hf_weights = broken


def _gate(rank, world_size, hf_dir, root):
    from mbridge.cli import main
    from mbridge_models.conversion.errors import ConversionError
    from mbridge_train.verification import export_verified, import_verified

    lines: list[str] = []
    out = {"import_rc": main(["convert", "import", hf_dir, f"{root}/ckpt", "--verify"]),
           "export_rc": main(["convert", "export", f"{root}/ckpt", f"{root}/hf-out", "--verify"]),
           "verify_rc": main(["convert", "verify", f"{root}/hf-out", f"{root}/ckpt"])}
    _corrupt_export()
    try:
        export_verified(f"{root}/ckpt", f"{root}/hf-bad", report=lines.append,
                        show_progress=False)
    except ConversionError as error:
        out["export_error"] = str(error)
    _corrupt_import()
    try:
        import_verified(hf_dir, f"{root}/ckpt-bad", report=lines.append)
    except ConversionError as error:
        out["import_error"] = str(error)
    out["lines"] = lines
    return out


def test_good_conversions_pass_and_a_broken_layer_is_named_and_not_written(tmp_path, capsys):
    _hf_llama(tmp_path / "hf")
    (out,) = run_ranks(_gate, 1, str(tmp_path / "hf"), str(tmp_path))
    assert out["import_rc"] == out["export_rc"] == out["verify_rc"] == 0
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").is_file()
    assert (tmp_path / "hf-out" / "config.json").is_file()
    for what in ("import", "export"):
        error = out[f"{what}_error"]
        assert "parity MISMATCH" in error, error
        assert f"first divergent layer: {BROKEN} " in error, error
    assert not (tmp_path / "hf-bad").exists() and not (tmp_path / "ckpt-bad").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def test_compare_models_names_the_first_divergent_layer():
    """The comparison itself, without conversion: megatron-like layers [s, b, h] against an
    HF-like model [b, s, h]; perturbing layer 2 of 4 names layer 2, not a later one."""
    from types import SimpleNamespace

    from mbridge_train.verification import compare_models

    torch.manual_seed(0)
    layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(4))
    head = torch.nn.Linear(8, 16)
    embed = torch.nn.Embedding(16, 8)

    class HF(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def get_decoder(self):
            return self

        def forward(self, ids):
            x = embed(ids)
            for layer in self.layers:
                x = layer(x)
            return SimpleNamespace(logits=head(x))

    class Megatron(torch.nn.Module):
        def __init__(self, broken=None):
            super().__init__()
            copies = [torch.nn.Linear(8, 8) for _ in range(4)]
            for i, c in enumerate(copies):
                c.load_state_dict(layers[i].state_dict())
            if broken is not None:
                with torch.no_grad():
                    copies[broken].bias.add_(1.0)
            self.decoder = torch.nn.Module()
            self.decoder.layers = torch.nn.ModuleList(copies)

        def forward(self, ids):
            x = embed(ids).transpose(0, 1)
            for layer in self.decoder.layers:
                x = layer(x)
            return head(x).transpose(0, 1)

    ids = torch.randint(0, 16, (2, 5))
    good = compare_models(HF(), Megatron(), ids, 16)
    assert good.passed and good.first_divergent_layer is None and good.max_logit_diff == 0
    bad = compare_models(HF(), Megatron(broken=2), ids, 16)
    assert not bad.passed and bad.first_divergent_layer == 2
    assert bad.layer_diffs[:2] == (0.0, 0.0)
