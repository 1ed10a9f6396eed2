"""Ctrl-C inside Numba: give the interrupt back to Python as a KeyboardInterrupt.

A signal that arrives while a Numba function runs is handled when control returns to the
interpreter; when that happens inside Numba's own machinery (unpickling a cached constant,
a parallel region), the ``KeyboardInterrupt`` surfaces as ``SystemError: ... returned a
result with an exception set``, with the interrupt as its cause. The command line maps a
``KeyboardInterrupt`` to exit code 130 (143 for its ``Terminated`` subclass) but a
``SystemError`` to a traceback, so every engine entry point that runs kernels is wrapped
with :func:`interrupts_restored`, which re-raises the original interrupt object (its class, so
``Terminated`` stays ``Terminated``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


@contextmanager
def interrupts_restored() -> Iterator[None]:
    """Re-raise an interrupt that comes out of the block wrapped in a SystemError as itself.

    A context manager rather than a decorator: it adds no frame between the engine's
    functions and their caller, so ``warnings.warn(stacklevel=...)`` still points at the
    caller.
    """
    try:
        yield
    except SystemError as exc:
        cause = interrupt_cause(exc)
        if cause is None:
            raise
        raise cause from None
