"""AutoBridge: a Hugging Face folder becomes a Megatron checkpoint that reproduces its logits,
and a checkpoint alone becomes a Hugging Face folder again, tensor for tensor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from hf_families import make_families, save_tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.multiproc


def _hf_llama(directory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=32, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    return model


def _convert_then_load(rank, world_size, hf_dir, out, ids):
    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.checkpointing import load_pretrained_weights

    folder = AutoBridge.import_ckpt(hf_dir, out)
    bridge = AutoBridge.from_hf_pretrained(hf_dir)
    provider = bridge.to_megatron_provider(load_weights=False, use_cpu_initialization=True,
                                           seq_length=ids.shape[1])
    provider.initialize_model_parallel(seed=123)  # a different init than the converter's
    model = provider.provide()
    load_pretrained_weights(out, [model])
    with torch.no_grad():
        logits = model(ids)
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    return folder, logits


def test_imported_checkpoint_reproduces_the_hugging_face_logits(tmp_path):
    hf = _hf_llama(tmp_path / "hf")
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
    ((folder, logits),) = run_ranks(_convert_then_load, 1, str(tmp_path / "hf"),
                                    str(tmp_path / "megatron"), ids)
    assert folder.endswith("iter_0000000")
    assert (tmp_path / "megatron" / "latest_checkpointed_iteration.txt").read_text().strip() == "0"
    assert (Path(folder) / "hf_assets" / "config.json").is_file()
    torch.testing.assert_close(logits[..., :128], expected, rtol=1e-4, atol=1e-4)  # fp32


def test_a_folder_without_config_is_named(tmp_path):
    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.checkpointing import CheckpointError

    with pytest.raises(CheckpointError, match="config.json: not found; AutoBridge reads local"):
        AutoBridge.import_ckpt(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------- export round trip


def _import_then_export(rank, world_size, hf_dirs, root):
    import shutil

    from mbridge_train.auto_bridge import AutoBridge

    for name, hf_dir in hf_dirs.items():
        AutoBridge.import_ckpt(hf_dir, f"{root}/{name}-ckpt")
        shutil.rmtree(hf_dir)  # from here on the checkpoint alone must suffice
        AutoBridge.export_ckpt(f"{root}/{name}-ckpt", f"{root}/{name}-out", show_progress=False)


PROMPT = "t5 t9 t12 t100"


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("round_trip")
    families, ids = make_families(root / "hf", names=["llama_tied", "qwen3", "qwen3_moe"])
    originals = {}
    for name, (folder, _) in families.items():
        save_tiny_tokenizer(folder)
        originals[name] = (load_file(f"{folder}/model.safetensors"),
                           AutoTokenizer.from_pretrained(folder)(PROMPT)["input_ids"])
    run_ranks(_import_then_export, 1, {n: f for n, (f, _) in families.items()}, str(root))
    return root, families, originals, ids


@pytest.mark.parametrize("family", ["llama_tied", "qwen3", "qwen3_moe"])
def test_checkpoint_alone_exports_every_tensor_bit_exactly(round_trip, family):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, families, originals, ids = round_trip
    out = root / f"{family}-out"
    exported = {}
    for file in out.glob("*.safetensors"):
        exported.update(load_file(str(file)))
    original, encoded = originals[family]
    assert sorted(exported) == sorted(original)
    assert all(torch.equal(exported[n], t) and exported[n].dtype == t.dtype
               for n, t in original.items())
    assert (out / "model.safetensors.index.json").is_file()
    assert ("lm_head.weight" in exported) == (family != "llama_tied")
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, families[family][1], rtol=0, atol=0)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer(PROMPT)["input_ids"] == encoded
    assert (out / "generation_config.json").is_file()
