"""lqlib's user-facing errors and how its commands report them.

:class:`LqlibError` is the base of every error whose message is written for the user — it says what is wrong
(naming the file or parameter) and what to do: bad input, missing data or models, a refused evaluation, a
training that cannot go on. Each such class also keeps the built-in base it had (``ValueError``,
``RuntimeError``, ``FileNotFoundError`` ...), so ``except ValueError`` code goes on working.

:func:`command` wraps the ``main(argv)`` of every ``python -m lqlib.*`` entry point: an :class:`LqlibError`
(and the built-in errors a command declares as its users' own, e.g. a bad ``--set`` value) is printed as
``error: <message>`` on stderr and the command exits with :data:`EXIT_USER_ERROR`; anything else is a bug
and keeps its traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Optional, Sequence

EXIT_USER_ERROR = 2  # as argparse exits on a bad command line


class LqlibError(Exception):
    """Base of lqlib's user-facing errors (see the module docstring)."""


def command(*also: type[BaseException]) -> Callable:
    """Decorator for a command's ``main(argv=None) -> int``: user-facing errors (:class:`LqlibError` and
    ``also``) become one ``error: ...`` message on stderr and exit code :data:`EXIT_USER_ERROR`."""
    handled = (LqlibError, *also)

    def wrap(main: Callable[[Optional[Sequence[str]]], int]) -> Callable[[Optional[Sequence[str]]], int]:
        @functools.wraps(main)
        def run(argv: Optional[Sequence[str]] = None) -> int:
            try:
                return main(argv)
            except handled as e:
                print(f"error: {e}", file=sys.stderr)
                return EXIT_USER_ERROR

        run.handled_errors = handled  # what the command reports without a traceback (its tests read it)
        return run

    return wrap
