"""Pretrain / finetune loop, losses, checkpoints, logging and recipes of mbridge."""

__version__ = "0.1.0"
