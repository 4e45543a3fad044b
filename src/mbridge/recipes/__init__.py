"""Recipes: functions returning a ConfigContainer, e.g. ``mbridge.recipes.llama.llama3_8b.pretrain_config()``.

Each recipe module defines module-level ``*_config`` functions (``pretrain_config``,
``finetune_config``, ...). ``mbridge recipes`` lists them by reading this package's sources, so the
listing never imports torch or megatron-core.
"""
