"""One module per Hugging Face architecture, each defining ``ARCHITECTURE`` (see registry)."""
