"""`megatron.bridge.training.finetune` (callable itself: see ``_entry_module``)."""

from mbridge.training._entry_module import make_callable
from mbridge_train.entry_points import finetune

__all__ = ["finetune"]
make_callable(__name__)
