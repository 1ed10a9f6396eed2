"""Ctrl-C inside Numba: give the interrupt back to Python as a KeyboardInterrupt.

A signal that arrives while a Numba function runs is handled when control returns to the
interpreter; when that happens inside Numba's own machinery (unpickling a cached constant,
a parallel region), the ``KeyboardInterrupt`` surfaces as ``SystemError: ... returned a
result with an exception set``, with the interrupt as its cause. The command line maps a
``KeyboardInterrupt`` to exit code 130 (143 for its ``Terminated`` subclass) but a
``SystemError`` to a traceback, so every engine entry point that runs kernels is wrapped
with :func:`interruptible`, which re-raises the original interrupt object (its class, so
``Terminated`` stays ``Terminated``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def interrupt_cause(exc: BaseException) -> KeyboardInterrupt | None:
    """Return the KeyboardInterrupt in ``exc``'s cause/context chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def interruptible(function: F) -> F:
    """Decorate ``function`` so an interrupt wrapped in a SystemError comes out as itself."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except SystemError as exc:
            cause = interrupt_cause(exc)
            if cause is None:
                raise
            raise cause from None

    return wrapper  # type: ignore[return-value]
