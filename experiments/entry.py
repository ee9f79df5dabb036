"""How every driver of experiments/ starts: bad input (a RelganError) is one line on stderr and exit code 1, and a
stop signal is one line and the shell's 128 + signal code, never a traceback."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from relgan.errors import RelganError, TrainingInterrupted


def run(main: Callable[[], None]) -> None:
    """Call a driver's ``main``; a RelganError becomes ``error: <one line>``, a stop signal ``interrupted: ...``.

    Inside training the first signal writes a checkpoint (TrainingInterrupted); elsewhere (sampling, metrics,
    plots) it arrives as KeyboardInterrupt, and what was finished before it is already on disk.
    """
    try:
        main()
    except TrainingInterrupted as stop:
        print(f"interrupted: {_one_line(stop)}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except KeyboardInterrupt:
        print(
            "interrupted: stopped by SIGINT outside training; every finished run and evaluation is saved, and "
            "the same command continues from them",
            file=sys.stderr,
        )
        raise SystemExit(128 + signal.SIGINT) from None
    except RelganError as error:
        raise SystemExit(f"error: {_one_line(error)}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
