"""Deprecated names: one ``DeprecationWarning`` format, kept for one release after a rename or move."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names", "warn_deprecated"]

REMOVAL = "0.2.0"
"""The release that removes the names deprecated in 0.1.0 (the first release keeps them, with a warning)."""


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that `old` is deprecated in favour of `new` (both as the user writes them)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in soflow-toolkit {REMOVAL}; use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` (PEP 562) for names that moved to another module.

    Args:
        module: the module that used to hold the names, e.g. `"soflow_toolkit"`.
        moved: old name -> the module that holds it now, e.g. `{"call_backbone": "soflow_toolkit.wrapper"}`.
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target = moved[name]
        warn_deprecated(f"{module}.{name}", f"{target}.{name}")
        return getattr(importlib.import_module(target), name)

    return __getattr__
