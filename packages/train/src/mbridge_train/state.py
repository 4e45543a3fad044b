"""GlobalState: what a forward step, the loop, checkpoints and loggers share during one run.

The forward step receives it as its first argument (``forward_step(state, data_iterator,
model)``), so user code reaches the config, the timers, the progress counters, the tokenizer
and the loggers without globals.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Progress counters; saved in every checkpoint and restored on resume."""

    step: int = 0
    consumed_train_samples: int = 0
    skipped_train_samples: int = 0
    consumed_valid_samples: int = 0
    floating_point_operations_so_far: float = 0.0
    do_train: bool = True
    do_valid: bool = False
    do_test: bool = False

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - set(asdict(self))
        if unknown:
            raise ValueError(f"train state: unknown fields {sorted(unknown)}")
        for name, value in state.items():
            setattr(self, name, value)


@dataclass
class GlobalState:
    """One per process and run. ``cfg`` is the finalized ConfigContainer."""

    cfg: Any = None
    train_state: TrainState = field(default_factory=TrainState)
    timers: Any = None
    """megatron.core.timers.Timers, created by the loop (log level from cfg.logger)."""
    tokenizer: Any = None
    tensorboard_logger: Any = None
    """A torch.utils.tensorboard SummaryWriter on the logging rank, else None."""
    wandb_logger: Any = None
    """The ``wandb`` run on the logging rank, else None."""
    signal_handler: Any = None
    """Set when exit_signal_handler is on: ``.signals_received()`` lists caught signals."""
    start_time: float = field(default_factory=time.time)
