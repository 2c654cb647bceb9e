"""One deadline for everything a call does: building Z3 terms as well as solving."""

from __future__ import annotations

import math
import time

from greybox.errors import SolverError

__all__ = ["Deadline", "OutOfTime"]


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
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"{what} must be a number of seconds or None, got "
                                f"{type(timeout).__name__}")
            if not (math.isfinite(timeout) and timeout > 0):
                raise ValueError(f"{what} must be a positive finite number of seconds or "
                                 f"None, got {timeout!r}")
        self.timeout = timeout
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
        return max(1, int(left * 1000))
