"""The stock GPT forward step: what it hands the model."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mbridge_config import FinetuningDatasetConfig, GPTDatasetConfig
from mbridge_train.gpt_step import forward_step


class _Recorder(torch.nn.Module):
    def forward(self, tokens, position_ids, attention_mask, packed_seq_params=None):
        self.mask = attention_mask
        return torch.zeros(*tokens.shape, 7)


def _batch():
    return {"tokens": torch.zeros(1, 4, dtype=torch.long), "labels": torch.zeros(1, 4,
                                                                               dtype=torch.long),
            "attention_mask": torch.ones(1, 1, 4, 4, dtype=torch.bool)}


def _mask_given(dataset):
    model = _Recorder()
    forward_step(SimpleNamespace(cfg=SimpleNamespace(dataset=dataset)), iter([_batch()]), model)
    return model.mask


def test_causal_masks_are_left_to_the_model_document_masks_are_passed():
    plain = GPTDatasetConfig(sequence_length=4, blend=["x"], create_attention_mask=True)
    assert _mask_given(plain) is None  # the model's causal mask type; SDPA stays on flash
    documents = GPTDatasetConfig(sequence_length=4, blend=["x"], create_attention_mask=True,
                                 reset_attention_mask=True)
    assert _mask_given(documents) is not None
    assert _mask_given(FinetuningDatasetConfig(seq_length=4)) is None
