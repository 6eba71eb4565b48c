"""kinestream: trustworthy acceleration, jerk and distance from live vehicle speed."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Lazy: importlib.metadata drags in email and socket, which the sans-I/O core must not load.
    if name != "__version__":
        raise AttributeError(name)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kinestream")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"
