"""Renamed public names: the one warning they give, and a module ``__getattr__`` that serves
the old names of a module's functions. Every old name works until version 1.0."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any


def warn_renamed(old: str, new: str, *, stacklevel: int = 2, noun: str = "name") -> None:
    """``old is renamed new; the old {noun} goes in version 1.0`` as a FutureWarning pointed at
    the ``stacklevel``-th caller of the function that calls this one (as ``warnings.warn``'s)."""
    warnings.warn(
        f"{old} is renamed {new}; the old {noun} goes in version 1.0",
        FutureWarning,
        stacklevel=stacklevel + 1,
    )


def module_getattr(
    shown: str, renamed: Mapping[str, str], namespace: Mapping[str, Any], module: str
) -> Callable[[str], object]:
    """A module's ``__getattr__``: ``renamed`` old names answer with the new object of
    ``namespace`` (the module's globals) and a warning naming ``shown.old``; others are the
    usual AttributeError of ``module``."""

    def __getattr__(name: str) -> object:
        if name in renamed:
            warn_renamed(f"{shown}.{name}", renamed[name])
            return namespace[renamed[name]]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
