"""Qwen 2.5, Qwen 3 and Qwen3-MoE recipes."""

from mbridge_train.recipes._family import family_attributes

__getattr__, __dir__ = family_attributes(__name__, __path__)
