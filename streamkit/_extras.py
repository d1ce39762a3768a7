"""Optional dependencies: imported when used, failing with the ``pip install`` line."""

from __future__ import annotations

import importlib
from types import ModuleType

from streamkit.errors import MissingExtraError

__all__ = ["require"]


def require(extra: str, module: str) -> ModuleType:
    """Import ``module`` of the ``streamkit[extra]`` install, or raise MissingExtraError.

    Raises:
        MissingExtraError: ``module`` is not installed; the message names the extra and
            the command that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingExtraError(extra=extra, module=missing) from None
