"""How every driver of experiments/ starts: bad input (a RelganError) is one line on stderr and exit code 1, never
a traceback."""

from __future__ import annotations

from collections.abc import Callable

from relgan.errors import RelganError


def run(main: Callable[[], None]) -> None:
    """Call a driver's ``main``; a RelganError becomes ``error: <one line>``."""
    try:
        main()
    except RelganError as error:
        raise SystemExit(f"error: {' '.join(str(error).split())}") from None
