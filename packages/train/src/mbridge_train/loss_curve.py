"""The loss-curve PNG written at the end of a run: train loss per step, validation loss per
evaluation.

It goes to ``<checkpoint.save>/loss_curve.png`` (beside the checkpoints it describes), else to
``<logger.tensorboard_dir>/loss_curve.png``, else nowhere. The image is drawn with matplotlib's
Agg canvas (no display, no pyplot global state) into a temporary file in the same folder and
renamed at the end, so a reader never sees a half-written PNG under the final name.

The curve covers the whole run across resumes: every step's losses and every validation result
are appended to ``loss_curve.jsonl`` beside the PNG as they happen (one JSON object a line), and
a resumed run first cuts that file back to the step it resumed from, so steps a killed run did
after its last checkpoint, done again now, are drawn once. A line cut short by a kill is skipped.
"""

from __future__ import annotations

import json
import os

from mbridge_train.atomic_file import replace_bytes, replace_file

FILENAME = "loss_curve.png"
HISTORY = "loss_curve.jsonl"


def destination(cfg) -> str | None:
    folder = cfg.checkpoint.save or cfg.logger.tensorboard_dir
    return os.path.join(folder, FILENAME) if folder else None


def history_path(cfg) -> str | None:
    path = destination(cfg)
    return os.path.join(os.path.dirname(path), HISTORY) if path else None


def resume_history(path: str, step: int) -> tuple[list[tuple[int, dict[str, float]]], list[dict]]:
    """(train points, validation records) of the run so far, up to and including ``step``
    (where this run resumes; 0: a fresh start). The file is rewritten to hold exactly those
    (temp name + rename)."""
    train, evaluations, kept = [], [], []
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    at = int(record["step"])
                except (ValueError, KeyError, TypeError):
                    continue  # cut short by a kill
                if at > step:
                    continue
                kept.append(line if line.endswith("\n") else line + "\n")
                if "split" in record:
                    evaluations.append(record)
                else:
                    train.append((at, dict(record.get("losses", {}))))
    replace_bytes(path, "".join(kept).encode(), suffix=".tmp")
    return train, evaluations


def append_history(path: str, record: dict) -> None:
    """One train step ({"step", "losses"}) or evaluation ({"step", "split", ...}) record."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


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
    replace_file(path, lambda f: figure.savefig(f, format="png"), suffix=".tmp")
    return path
