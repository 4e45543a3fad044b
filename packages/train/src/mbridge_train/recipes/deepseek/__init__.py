"""DeepSeek-V2-Lite and DeepSeek-V3 recipes (multi-latent attention + MoE)."""

from mbridge_train.recipes._family import family_attributes

__getattr__, __dir__ = family_attributes(__name__, __path__)
