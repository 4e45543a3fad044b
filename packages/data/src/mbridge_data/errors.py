"""One error type for bad data: a missing, truncated or malformed file, named with its place."""

from __future__ import annotations


class DataError(ValueError):
    """A data file or data option is unusable; the message names the file (and line) and why.

    Config-field problems that can be checked without reading data raise
    ``mbridge_config.errors.ConfigError`` instead; this one is for what is found on disk.
    Not an ``MBridgeError`` subclass: preprocessing runs without torch, and mbridge_config
    imports megatron-core (``mbridge_train.user_errors`` lists it beside MBridgeError).
    """


def at_line(path: str, line: int, message: str) -> DataError:
    """An error pointing at ``path:line`` (1-based), the way editors and compilers do."""
    return DataError(f"{path}:{line}: {message}")
