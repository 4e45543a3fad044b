"""What every benchmark result names: the commit and device it was measured on; and the one way
results are written (temp name in the same folder, then renamed: never half a file)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def commit() -> str:
    """``MBRIDGE_COMMIT`` (set where the tree travels without .git, e.g. to the GPU host), else
    git's short HEAD, else "unknown"."""
    if os.environ.get("MBRIDGE_COMMIT"):
        return os.environ["MBRIDGE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2))
