"""Where downloaded datasets live on disk."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """Returns the folder kilnet caches datasets in; it may not exist yet.

    `$XDG_CACHE_HOME/kilnet` when that variable holds an absolute path, else
    `~/.cache/kilnet`. Each dataset gets a subfolder (`mnist/`, `fashion-mnist/`).
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "kilnet"


def offline() -> bool:
    """True when `KILNET_OFFLINE` asks kilnet never to touch the network."""
    return os.environ.get("KILNET_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
