"""Megatron Bridge's AutoBridge names and call shapes, and bad input: one line naming the tensor,
file or field, nothing written to the target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from hf_families import make_families  # noqa: E402

pytestmark = pytest.mark.multiproc


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    families, ids = make_families(tmp_path_factory.mktemp("hf"), names=["llama"])
    return families["llama"], ids


def test_listing_and_capability_checks(llama, tmp_path):
    from transformers import AutoConfig, GPT2Config

    from mbridge_train.auto_bridge import AutoBridge

    (folder, _), _ = llama
    assert AutoBridge.list_supported_models() == ["deepseek_v2", "deepseek_v3", "llama",
                                                  "mistral", "nemotron", "qwen2", "qwen3",
                                                  "qwen3_moe"]
    assert AutoBridge.supports(AutoConfig.from_pretrained(folder))
    assert not AutoBridge.supports(GPT2Config())
    assert AutoBridge.can_handle(folder) and not AutoBridge.can_handle(tmp_path)
    provider = AutoBridge.from_hf_config(AutoConfig.from_pretrained(folder)).to_megatron_provider(
        load_weights=False)
    assert (provider.num_layers, provider.num_query_groups, provider.rope_scaling,
            provider.rope_scaling_factor, provider.rotary_base) == (2, 2, True, 8.0, 500000.0)


def _api(rank, world_size, folder, ids):
    from megatron.core import parallel_state

    from mbridge.models.conversion import weights_verification_table
    from mbridge_train.auto_bridge import AutoBridge

    bridge = AutoBridge.from_hf_pretrained(folder, torch_dtype=torch.float32)
    model = bridge.to_megatron_model(wrap_with_ddp=False, seq_length=ids.shape[1],
                                     use_cpu_initialization=True)
    with torch.no_grad():
        logits = model[0](ids, torch.arange(ids.shape[1]).expand(ids.shape[0], -1), None)
    table = weights_verification_table(bridge, model)
    with torch.no_grad():  # a changed weight is caught by name
        model[0].decoder.layers[1].mlp.linear_fc2.weight[0, 0] += 1.0
    changed = weights_verification_table(bridge, model)
    parallel_state.destroy_model_parallel()
    return type(model).__name__, logits, table.all_match, len(table.rows), [
        r.name for r in changed.mismatches()], str(table).splitlines()[0]


def test_to_megatron_model_and_the_verification_table(llama):
    (folder, hf_logits), ids = llama
    ((kind, logits, all_match, rows, mismatched, header),) = run_ranks(_api, 1, folder, ids)
    assert kind == "list"
    assert (logits - hf_logits).abs().max() < 1e-4
    assert all_match and rows == 2 * 9 + 3  # 9 tensors a layer + embedding, norm, lm_head
    assert mismatched == ["model.layers.1.mlp.down_proj.weight"]
    assert header.split() == ["tensor", "shape", "dtype", "max|diff|", "match"]


# ---------------------------------------------------------------------- bad input


def _edit(folder, out, tensors=None, config=None, truncate=False):
    """A copy of the HF folder with its tensors / config edited."""
    from safetensors.torch import load_file, save_file

    out.mkdir()
    state = load_file(f"{folder}/model.safetensors")
    if tensors:
        tensors(state)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    data = json.loads(Path(folder, "config.json").read_text())
    data.update(config or {})
    (out / "config.json").write_text(json.dumps(data))
    if truncate:
        raw = (out / "model.safetensors").read_bytes()
        (out / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    return str(out)


CASES = {
    "missing tensor": (dict(tensors=lambda s: s.pop("model.layers.1.mlp.up_proj.weight")),
                       r"src-0: has no tensor model.layers.1.mlp.up_proj.weight \(a llama model of 2 layers needs it\)"),
    "unexpected tensor": (dict(tensors=lambda s: s.update(
        {"model.layers.0.mlp.extra.weight": torch.zeros(2)})),
        r"model.safetensors: unexpected tensor model.layers.0.mlp.extra.weight"),
    "shape mismatch": (dict(tensors=lambda s: s.update(
        {"model.layers.0.self_attn.k_proj.weight": torch.zeros(48, 64)})),
        r"model.safetensors: tensor model.layers.0.self_attn.k_proj.weight has shape \(48, 64\), "
        r"the model needs \(32, 64\)"),
    "unknown architecture": (dict(config={"model_type": "gpt2"}),
                             r"model_type 'gpt2' is not supported; supported: deepseek_v2, "
                             r"deepseek_v3, llama, mistral, nemotron, qwen2, qwen3, qwen3_moe$"),
    "truncated safetensors": (dict(truncate=True),
                              r"model.safetensors: not a readable safetensors file"),
    "unsupported rope": (dict(config={"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}),
                         r"config field rope_parameters.rope_type: 'yarn' is not supported"),
}


def _bad_imports(rank, world_size, sources, root, good):
    from mbridge_models.conversion.errors import ConversionError
    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.checkpointing import CheckpointError

    errors = {}
    attempts = dict(sources)
    attempts["hub id offline"] = "meta-llama/Llama-3.2-1B"
    for case, source in attempts.items():
        try:
            AutoBridge.import_ckpt(source, f"{root}/{case}")
        except (ConversionError, CheckpointError) as error:
            errors[case] = str(error)
    AutoBridge.import_ckpt(good, f"{root}/llama-ckpt")
    qwen3 = {**json.loads(Path(good, "config.json").read_text()), "model_type": "qwen3"}
    try:
        AutoBridge.from_hf_config(qwen3).export_ckpt(f"{root}/llama-ckpt", f"{root}/other arch")
    except ConversionError as error:
        errors["other architecture"] = str(error)
    return errors


@pytest.fixture(scope="module")
def bad(llama, tmp_path_factory):
    (folder, _), _ = llama
    root = tmp_path_factory.mktemp("bad")
    sources = {case: _edit(folder, root / f"src-{i}", **edits)
               for i, (case, (edits, _)) in enumerate(CASES.items())}
    (errors,) = run_ranks(_bad_imports, 1, sources, str(root), folder)
    return root, errors


@pytest.mark.parametrize("case", [*CASES, "hub id offline", "other architecture"])
def test_bad_input_is_one_line_naming_it_and_writes_nothing(bad, case):
    import re

    root, errors = bad
    message = errors.get(case)
    assert message is not None, f"{case}: no error raised"
    assert "\n" not in message
    expected = {"hub id offline": r"meta-llama/Llama-3.2-1B: no such local folder \(looks like a "
                                  r"Hugging Face hub id: this machine downloads nothing and is "
                                  r"offline",
                "other architecture": r"llama-ckpt/iter_0000000: is a 'llama' checkpoint .*this "
                                      r"bridge converts 'qwen3'"}.get(case) or CASES[case][1]
    assert re.search(expected, message), message
    assert not (root / case).exists()


def _bad_cli(rank, world_size, sources, root, good):
    """The same bad inputs through `mbridge convert ... --verify`: (exit status, stderr)."""
    import contextlib
    import io
    import shutil

    from mbridge.cli import main

    attempts = {case: ["convert", "import", src, f"{root}/{case}", "--verify"]
                for case, src in sources.items()}
    attempts["hub id offline"] = ["convert", "import", "meta-llama/Llama-3.2-1B",
                                  f"{root}/hub id offline", "--verify"]
    assert main(["convert", "import", good, f"{root}/llama-ckpt"]) == 0
    qwen3 = Path(root, "qwen3-src")
    shutil.copytree(good, qwen3)
    config = json.loads((qwen3 / "config.json").read_text())
    (qwen3 / "config.json").write_text(json.dumps({**config, "model_type": "qwen3"}))
    attempts["other architecture"] = ["convert", "export", f"{root}/llama-ckpt",
                                      f"{root}/other architecture", "--hf-config", str(qwen3),
                                      "--verify"]
    attempts["other architecture (verify)"] = ["convert", "verify", str(qwen3),
                                               f"{root}/llama-ckpt"]
    results = {}
    for case, argv in attempts.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            results[case] = (main(argv), err.getvalue())
    return results


@pytest.fixture(scope="module")
def bad_cli(llama, tmp_path_factory):
    (folder, _), _ = llama
    root = tmp_path_factory.mktemp("bad_cli")
    sources = {case: _edit(folder, root / f"src-{i}", **edits)
               for i, (case, (edits, _)) in enumerate(CASES.items())}
    (results,) = run_ranks(_bad_cli, 1, sources, str(root), folder)
    return root, results


@pytest.mark.parametrize("case", [*CASES, "hub id offline", "other architecture",
                                  "other architecture (verify)"])
def test_cli_bad_input_is_one_stderr_line_exit_2_and_nothing_written(bad_cli, case):
    import re

    root, results = bad_cli
    rc, stderr = results[case]
    assert rc == 2, (case, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mbridge convert: error: "), stderr
    expected = {"hub id offline": r"meta-llama/Llama-3.2-1B: no such local folder \(looks like a "
                                  r"Hugging Face hub id",
                "other architecture": r"llama-ckpt/iter_0000000: is a 'llama' checkpoint .*this "
                                      r"bridge converts 'qwen3'",
                "other architecture (verify)": r"llama-ckpt/iter_0000000: is a 'llama' "
                                               r"checkpoint .*this bridge converts 'qwen3'",
                }.get(case) or CASES[case][1]
    assert re.search(expected, lines[0]), lines[0]
    assert not (root / case).exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
