"""One module per sub-API; each exposes ``router``."""
