"""Tokenizers, pretraining and fine-tuning datasets, sequence packing for mbridge."""

__version__ = "0.1.0"
