"""Hugging Face <-> megatron-core weight conversion (Llama-style decoders)."""
