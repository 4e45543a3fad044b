"""Helpers recipes share (`megatron.bridge.recipes.utils`)."""
