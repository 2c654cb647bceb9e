"""One deadline for everything a call does: building Z3 terms as well as solving."""

from __future__ import annotations

import math
import time

from greybox.errors import DataError, SolverError

__all__ = ["Deadline", "OutOfTime", "timeout_seconds", "z3_milliseconds"]

#: the largest time-out Z3 takes, in milliseconds (an unsigned 32-bit number: about 49 days)
MAX_MS = 2 ** 32 - 1


def timeout_seconds(value, *, what: str = "timeout", none: bool = False) -> float | None:
    """A number of seconds given to a public function, checked as the command line checks
    ``--timeout``: finite and above 0 (None: no limit, where ``none``).

    Every public function with a time-out checks it here, before any work (Z3 would
    raise ``OverflowError`` on ``inf``, HiGHS run without a limit).

    Examples
    --------
    >>> import greybox.rules as gr
    >>> gr.engine.timeout_seconds(2), gr.engine.timeout_seconds(None, none=True)
    (2.0, None)
    >>> gr.engine.timeout_seconds(float("inf"), what="reason's timeout")
    Traceback (most recent call last):
    ...
    greybox.errors.DataError: reason's timeout must be a finite number of seconds above 0, got inf
    """
    if value is None and none:
        return None
    wanted = "a finite number of seconds above 0" + (" or None" if none else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{what} must be {wanted}, got {value!r} ({type(value).__name__})")
    if not (0 < value < math.inf):
        raise DataError(f"{what} must be {wanted}, got {value!r}")
    return float(value)


def z3_milliseconds(left: float) -> int:
    """Seconds as Z3's time-out: milliseconds, at least 1 and at most :data:`MAX_MS`.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> gr.engine.z3_milliseconds(2.5), gr.engine.z3_milliseconds(-1.0), gr.engine.z3_milliseconds(1e300)
    (2500, 1, 4294967295)
    """
    return max(1, min(int(left * 1000), MAX_MS))


class OutOfTime(SolverError):
    """The deadline passed; ``doing`` says what was under way."""

    def __init__(self, message: str, doing: str = ""):
        super().__init__(message)
        self.doing = doing


class Deadline:
    """``timeout`` seconds from now (None: no limit).

    Examples
    --------
    >>> d = Deadline(None)
    >>> d.remaining() is None, d.expired()
    (True, False)
    """

    def __init__(self, timeout: float | None, *, what: str = "timeout"):
        self.timeout = timeout_seconds(timeout, what=what, none=True)
        self.start = time.monotonic()

    def remaining(self) -> float | None:
        if self.timeout is None:
            return None
        return self.timeout - (time.monotonic() - self.start)

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def check(self, doing: str) -> None:
        """Raise :class:`OutOfTime` when the deadline has passed."""
        if self.expired():
            raise OutOfTime(f"ran out of time (timeout={self.timeout:g} s) while {doing}; "
                            "try a larger timeout", doing)

    def solver_ms(self) -> int | None:
        """The time left in milliseconds for Z3 (at least 1), None without a limit."""
        left = self.remaining()
        if left is None:
            return None
        return z3_milliseconds(left)
