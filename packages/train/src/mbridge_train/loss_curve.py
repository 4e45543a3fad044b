"""The loss-curve PNG written at the end of a run: train loss per step, validation loss per
evaluation.

It goes to ``<checkpoint.save>/loss_curve.png`` (beside the checkpoints it describes), else to
``<logger.tensorboard_dir>/loss_curve.png``, else nowhere. The image is drawn with matplotlib's
Agg canvas (no display, no pyplot global state) into a temporary file in the same folder and
renamed at the end, so a reader never sees a half-written PNG under the final name.
"""

from __future__ import annotations

import os
import tempfile

FILENAME = "loss_curve.png"


def destination(cfg) -> str | None:
    folder = cfg.checkpoint.save or cfg.logger.tensorboard_dir
    return os.path.join(folder, FILENAME) if folder else None


def write_loss_curve(path: str, train: list[tuple[int, dict[str, float]]],
                     evaluations: list[dict]) -> str:
    """Draw ``train`` ((step, {loss name: value}) per step) and the validation ``evaluations``
    (history records with ``split == "validation"``) to ``path``; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = list(dict.fromkeys(name for _, losses in train for name in losses))
    for index, name in enumerate(names):
        color = f"C{index}"
        points = [(step, losses[name]) for step, losses in train if name in losses]
        axes.plot(*zip(*points), color=color, linewidth=1.2, label=f"train {name}")
        valid = [(r["step"], r[name]) for r in evaluations
                 if r.get("split") == "validation" and name in r]
        if valid:
            axes.plot(*zip(*valid), color=color, marker="o", linestyle="--",
                      label=f"validation {name}")
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if names:
        axes.legend()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            figure.savefig(handle, format="png")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the rename
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
