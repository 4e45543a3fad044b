"""Llama 3, 3.1 and 3.2 recipes (meta-llama checkpoints)."""

from mbridge_train.recipes._family import family_attributes

__getattr__, __dir__ = family_attributes(__name__, __path__)
