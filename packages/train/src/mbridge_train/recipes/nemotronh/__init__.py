"""Nemotron-H recipes (hybrid Mamba-2 / attention)."""

from mbridge_train.recipes._family import family_attributes

__getattr__, __dir__ = family_attributes(__name__, __path__)
