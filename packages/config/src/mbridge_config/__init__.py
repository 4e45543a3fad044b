"""ConfigContainer and the typed sub-configs of mbridge."""

__version__ = "0.1.0"
