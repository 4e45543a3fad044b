"""Fine-tuning data: answer-only loss, templates, truncation rules, split files, bad records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import write_jsonl
from mbridge_data.errors import DataError
from mbridge_data.finetuning.builder import build_finetuning_datasets
from mbridge_data.finetuning.dataset import SFTDataset
from mbridge_data.finetuning.sft import build_sample
from mbridge_data.tokenizers.null import NullTokenizer

TOK = NullTokenizer()  # byte-level: one token per ASCII character, EOD = 256


def ft_config(root, **fields):
    from mbridge_config import FinetuningDatasetConfig

    fields.setdefault("seq_length", 64)
    return FinetuningDatasetConfig(dataset_root=str(root), **fields)


def text_of(ids) -> str:
    return TOK.detokenize([i for i in ids if i < 256])


def trained_text(item) -> str:
    labels = np.asarray(item["labels"])[np.asarray(item["loss_mask"]) == 1]
    return text_of(labels) + ("<eod>" if TOK.eod in labels else "")


@pytest.mark.parametrize("record", [{"input": "What is 2 + 3?", "output": "5"},
                                    {"prompt": "What is 2 + 3?", "completion": "5"}])
def test_loss_only_on_the_answer(tmp_path, record):
    path = write_jsonl(tmp_path / "training.jsonl", [record])
    item = SFTDataset(path, TOK, seq_length=64)[0]
    full = "What is 2 + 3?\n5"
    assert text_of(item["tokens"]) == full and text_of(item["labels"]) == full[1:]
    assert trained_text(item) == "5<eod>"  # the answer and the end of the answer
    assert list(item["position_ids"]) == list(range(len(item["tokens"])))


def test_chat_messages_train_on_every_assistant_turn(tmp_path):
    chat = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello"},
                         {"role": "user", "content": "Bye"},
                         {"role": "assistant", "content": "Ciao"}]}
    path = write_jsonl(tmp_path / "training.jsonl", [chat])
    item = SFTDataset(path, TOK, 256)[0]
    assert text_of(item["tokens"]) == ("System: Be brief.\nUser: Hi\nAssistant: Hello\n"
                                       "User: Bye\nAssistant: Ciao\n")
    assert trained_text(item) == "Hello\nCiao\n<eod>"


def test_templates_come_from_dataset_kwargs(tmp_path):
    path = write_jsonl(tmp_path / "training.jsonl", [
        {"input": "2+2", "output": "4"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    kwargs = {"prompt_template": "Q: {input} A:", "add_eos": False,
              "chat_template": {"user": "<u>{content}</u>", "assistant": "<a>{content}</a>"}}
    ds = SFTDataset(path, TOK, 64, kwargs)
    assert text_of(ds[0]["tokens"]) + text_of(ds[0]["labels"][-1:]) == "Q: 2+2 A:4"
    assert trained_text(ds[0]) == "4"
    assert trained_text(ds[1]) == "a</a>"


@given(prompt=st.text(st.characters(codec="ascii"), max_size=80),
       answer=st.text(st.characters(codec="ascii"), min_size=1, max_size=40),
       seq_length=st.integers(4, 100), how=st.sampled_from(["left", "right"]))
def test_truncation_drops_prompt_first_and_never_exceeds_seq_length(prompt, answer, seq_length,
                                                                    how):
    p, a = list(prompt.encode()), list(answer.encode())
    s = build_sample([(p, False), (a, True)], seq_length, eos=TOK.eod, truncation=how)
    ids = list(s.tokens) + [int(s.labels[-1])] if len(s) else []
    assert len(s) <= seq_length
    full = len(p) + len(a) + 1
    assert len(s) == min(seq_length, full - 1)
    if len(a) + 1 <= seq_length + 1:  # the answer fits: it is kept whole, with its EOS
        assert ids[len(ids) - len(a) - 1:] == a + [TOK.eod]
        kept = len(ids) - len(a) - 1
        assert ids[:kept] == (p[len(p) - kept:] if how == "left" else p[:kept])
        assert list(s.loss_mask) == [0] * max(0, kept - 1) + [1] * (len(a) + 1) if kept else True
    else:  # only the answer's start survives
        assert ids == a[: seq_length + 1]
    assert all(m in (0, 1) for m in s.loss_mask)


def test_truncation_keeps_bos(tmp_path):
    s = build_sample([(list(b"abcdef"), False), (list(b"XY"), True)], 5, bos=300, eos=256)
    assert list(s.tokens) + [int(s.labels[-1])] == [300, ord("e"), ord("f"), ord("X"), ord("Y"),
                                                    256]


def test_splits_and_switches(tmp_path):
    rec = {"input": "a", "output": "b"}
    write_jsonl(tmp_path / "training.jsonl", [rec] * 5)
    write_jsonl(tmp_path / "validation.jsonl", [rec] * 2)
    train, valid, test = build_finetuning_datasets(ft_config(tmp_path, do_test=False), TOK)
    assert (len(train), len(valid), test) == (5, 2, None)
    with pytest.raises(DataError, match=r"test\.jsonl: missing test split .*do_test=False"):
        build_finetuning_datasets(ft_config(tmp_path), TOK)
    train, valid, _ = build_finetuning_datasets(
        ft_config(tmp_path, do_validation=False, do_test=False, max_train_samples=3), TOK)
    assert len(train) == 3 and valid is None


@pytest.mark.parametrize("packed", [False, True])
def test_ids_beyond_the_model_vocabulary_are_refused_naming_the_file(tmp_path, packed):
    from mbridge_config import PackedSequenceSpecs

    write_jsonl(tmp_path / "training.jsonl", [{"input": "a", "output": "z"}] * 4)
    fields = dict(do_validation=False, do_test=False)
    if packed:
        fields["packed_sequence_specs"] = PackedSequenceSpecs(packed_sequence_size=64)
    build_finetuning_datasets(ft_config(tmp_path, **fields), TOK, vocab_size=ord("z") + 1)
    with pytest.raises(DataError) as error:
        build_finetuning_datasets(ft_config(tmp_path, **fields), TOK, vocab_size=ord("z"))
    expected = f"{tmp_path / 'training.jsonl'}: tokenized to id {ord('z')}"
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_missing_training_file_and_root(tmp_path):
    with pytest.raises(DataError, match=r"training\.jsonl: missing train split"):
        build_finetuning_datasets(ft_config(tmp_path, do_validation=False, do_test=False), TOK)
    with pytest.raises(DataError, match=r"is not a directory"):
        build_finetuning_datasets(ft_config(tmp_path / "nope"), TOK)


@pytest.mark.parametrize("line, message", [
    ('{"input": "a", "output": "b"', "not valid JSON"),
    ('{"question": "a"}', 'expected {"input", "output"}'),
    ('{"input": 1, "output": "b"}', "must be strings"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "unknown role 'robot'"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "at least one assistant"),
    ("[1, 2]", "expected a JSON object"),
])
def test_malformed_records_are_named_by_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "training.jsonl", ['{"input": "a", "output": "b"}', "", line])
    with pytest.raises(DataError) as info:
        SFTDataset(path, TOK, 64)
    assert str(info.value).startswith(f"{path}:3: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_dataset_kwargs(tmp_path):
    path = write_jsonl(tmp_path / "training.jsonl", [{"input": "a", "output": "b"}])
    with pytest.raises(DataError, match="unknown option.*prompt_templat\\b"):
        SFTDataset(path, TOK, 64, {"prompt_templat": "{input}"})
    with pytest.raises(DataError, match="must contain {input}"):
        SFTDataset(path, TOK, 64, {"prompt_template": "no placeholder"})


def test_collate_pads_at_the_end_without_training_on_padding(tmp_path):
    path = write_jsonl(tmp_path / "training.jsonl", [{"input": "a", "output": "b"},
                                                     {"input": "long prompt", "output": "c"}])
    ds = SFTDataset(path, TOK, 64)
    batch = ds.collate([ds[0], ds[1]])
    assert batch["tokens"].shape == (2, len(ds[1]["tokens"]))
    assert batch["loss_mask"][0, len(ds[0]["tokens"]):].sum() == 0
    assert batch["loss_mask"].sum() == 4  # "b"+EOD and "c"+EOD
    padded = SFTDataset(path, TOK, 64, {"pad_to_max_length": True})
    assert padded.collate([padded[0]])["tokens"].shape == (1, 64)
