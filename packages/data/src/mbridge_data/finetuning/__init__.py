"""Fine-tuning data: records -> templated, tokenized, truncated samples with answer-only loss."""
