"""`megatron.bridge.training.pretrain` (callable itself: see ``_entry_module``)."""

from mbridge.training._entry_module import make_callable
from mbridge_train.entry_points import pretrain

__all__ = ["pretrain"]
make_callable(__name__)
