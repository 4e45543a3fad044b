"""Recipes: functions returning a ready-to-train ConfigContainer for a published model.

One module per model (``llama/llama3_8b.py``, ``qwen/qwen3_30b_a3b.py``, ...) defines
``pretrain_config(...)`` and ``finetune_config(...)``: plain functions whose bodies bind the
arguments to that model's typed spec (``spec.py``) and call a shared builder (``build.py``), then
apply what is particular to the model. ``tiny/gpt_tiny.py`` trains on a laptop CPU in seconds.
The same module objects are importable as ``mbridge.recipes.<family>.<model>``.

Importing this package imports nothing heavy; a recipe module imports megatron-core through the
model presets.
"""
