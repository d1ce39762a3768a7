"""The ``streamkit`` command line and the demo (needs ``pip install 'streamkit[cli]'``)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Console-script entry point: the command, or the install line when the extra is missing."""
    from streamkit._extras import require
    from streamkit.errors import MissingExtraError

    try:
        require("cli", "typer")
        require("cli", "rich")
    except MissingExtraError as exc:
        sys.stderr.write(f"streamkit: {exc}\n")
        raise SystemExit(2) from None
    from streamkit.cli.main import main as run

    run()
