"""`megatron.bridge.models.conversion`: Hugging Face <-> Megatron conversion."""
