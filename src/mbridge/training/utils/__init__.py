"""`megatron.bridge.training.utils`: training helpers (only the modules listed here)."""
