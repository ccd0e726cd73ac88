"""One error type for bad input, and the console-script guard that turns it into one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class EcgError(Exception):
    """Bad input or setting: the message names the file or setting and what is wrong."""


def check_settings(checks) -> None:
    """Raise :class:`EcgError` for the first ``(setting, value, ok, expected)`` that fails."""
    for key, value, ok, expected in checks:
        if not ok:
            raise EcgError(f"{key}: got {value}, expected {expected}")


def cli_errors(func: F) -> F:
    """Wrap a console-script ``main`` so that bad input ends in one line and exit status 2.

    Hydra config errors (a typo, a wrong type) are reported by Hydra itself before ``func``
    runs; this only catches what our own code raises as :class:`EcgError`.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EcgError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
