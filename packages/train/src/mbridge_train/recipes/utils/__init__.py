"""Helpers the recipes share (Megatron Bridge's ``recipes.utils``): optimizer + schedule, data
blends from paths, the default PEFT configs."""
