"""Recipes that train on a laptop CPU in seconds (tests, the README, debugging a setup)."""

from mbridge_train.recipes._family import family_attributes

__getattr__, __dir__ = family_attributes(__name__, __path__)
