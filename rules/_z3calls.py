"""Z3 across threads: one lock, a Z3 context per call, releases under the lock.

A Z3 context is not thread-safe: two threads building terms, solving
or freeing terms in one context at once corrupt it and kill the process. So:

* every public entry that touches Z3 -- ``entails``, ``check``, ``to_z3``, the formal
  explanations, ``predict``'s Z3 repair -- holds :data:`Z3_LOCK` for its whole call
  through :func:`z3_serialised`;
* each outermost call works in a Z3 context of its own (:func:`z3_serialised` installs a
  fresh one as z3py's default context for the calling thread only), so no term, solver
  or learned state outlives the call in a shared context: answers do not depend on
  earlier calls, and a call's leftovers are never freed in a context another call uses.
  :func:`to_z3` is the exception: its terms are for the caller, in z3py's own default
  context;
* z3py frees terms from ``__del__``, in whichever thread drops the last reference (or
  runs the cyclic collector). Those releases go through :func:`_guarded`: queued, and
  the queue drained in order by a thread holding :data:`Z3_LOCK` (this one where it holds
  the lock or can take it without waiting, else the holder), so that no Z3 function ever
  runs outside the lock and no context is deleted under a release still waiting.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
import traceback

import z3

__all__ = ["Z3_LOCK", "z3_serialised", "call_cache", "in_context"]

#: The lock every use of Z3 holds (re-entrant: a serialised call may make others). Hold
#: it yourself to use the terms of :class:`Z3Encoding` or :func:`to_z3` while other
#: threads call greybox.
Z3_LOCK = threading.RLock()


#: per thread: the Z3 context of the outermost serialised call running in it (or None),
#: and the call-scoped caches (:func:`call_cache`)
_CALL = threading.local()
#: z3py releases wanted by threads that did not hold :data:`Z3_LOCK` (first in, first out)
_PENDING: collections.deque = collections.deque()
_z3_main_ctx = z3.z3.main_ctx


def _main_ctx() -> z3.Context:
    """z3py's default context as this thread sees it: the context of the serialised call
    running in this thread, else z3py's own global one."""
    ctx = getattr(_CALL, "ctx", None)
    return ctx if ctx is not None else _z3_main_ctx()


def _drain() -> None:
    """Do the queued releases (holding :data:`Z3_LOCK`) strictly in the order they were
    asked -- a term's release before its context's deletion, which would otherwise free
    the context under a release still waiting. Not re-entered: a release the draining
    thread asks meanwhile (the collector runs where Python allocates) joins the queue."""
    if getattr(_CALL, "draining", False):
        return
    _CALL.draining = True
    try:
        while _PENDING:
            release, args = _PENDING.popleft()
            try:
                release(*args)
            except Exception:  # pragma: no cover - a failed release frees nothing more
                pass
    finally:
        _CALL.draining = False


def _guarded(release):
    """``release`` (a z3py ``*_dec_ref``/``del_*`` function) run only under
    :data:`Z3_LOCK`, in the order releases are asked: queued, and the queue drained at
    once where this thread holds the lock or can take it without waiting; otherwise the
    thread that holds it drains the queue (when its call ends, or at its next release).
    Never waits: ``__del__`` runs wherever the interpreter frees an object, possibly
    while that thread holds a lock the Z3 holder is waiting for."""
    def free(*args):
        lock = Z3_LOCK
        if lock is None:   # interpreter shutdown: modules are being torn down
            return release(*args)
        _PENDING.append((release, args))
        if lock._is_owned():
            _drain()
        elif lock.acquire(blocking=False):
            try:
                _drain()
            finally:
                lock.release()

    free.greybox_guarded = True
    return free


def _install() -> None:
    """Route z3py's default context and its releases through this module (once)."""
    if getattr(z3.z3.main_ctx, "greybox_call_context", False):
        return
    _main_ctx.greybox_call_context = True
    z3.z3.main_ctx = _main_ctx
    z3.main_ctx = _main_ctx
    for name in dir(z3.z3):
        if name.startswith("Z3_") and (name.endswith("_dec_ref") or name.startswith("Z3_del_")):
            fn = getattr(z3.z3, name)
            if callable(fn) and not getattr(fn, "greybox_guarded", False):
                setattr(z3.z3, name, _guarded(fn))


_install()


@contextlib.contextmanager
def in_context(ctx: z3.Context):
    """Build in ``ctx`` (as z3py's default context of this thread) within the block; for
    terms kept beyond a call (hold :data:`Z3_LOCK`)."""
    before = getattr(_CALL, "ctx", None)
    _CALL.ctx = ctx
    try:
        yield ctx
    finally:
        _CALL.ctx = before


def call_cache() -> dict:
    """A dict that lives as long as the outermost serialised call running in this thread
    (for Z3 terms reused within the call: they belong to its context). Outside a call,
    an empty dict that nothing keeps."""
    cache = getattr(_CALL, "cache", None)
    return cache if cache is not None else {}


def _context_of(args) -> z3.Context:
    """The context a serialised call works in: a method of an object that keeps Z3 terms
    between calls (a ``z3_context`` attribute: a solver problem) works in the object's;
    any other call in a fresh one."""
    held = getattr(args[0], "z3_context", None) if args else None
    return held if isinstance(held, z3.Context) else z3.Context()


def z3_serialised(fn=None, *, own_context: bool = True):
    """Run ``fn`` holding :data:`Z3_LOCK` for the whole call, building terms as well as
    solving (its timeout counts once it holds the lock: waiting for another thread's
    call is not part of it). The outermost such call in a thread runs in a fresh Z3
    context of its own, dropped (holding the lock) when it returns, so that its answers do
    not depend on earlier calls; ``own_context=False`` builds in the caller's default
    context instead (for terms handed to the caller, as :func:`to_z3` does). A method of
    an object with a ``z3_context`` attribute (one that keeps Z3 terms between calls)
    works in that context.

    Examples
    --------
    >>> import z3
    >>> import greybox.rules as gr
    >>> @gr.engine.z3_serialised
    ... def held():
    ...     return gr.Z3_LOCK._is_owned(), z3.Int("x").ctx is z3.main_ctx()
    >>> held(), held.z3_serialised
    ((True, True), True)
    >>> held_ctx = gr.engine.z3_serialised(lambda: z3.main_ctx())
    >>> held_ctx() is z3.main_ctx(), held_ctx() is held_ctx()
    (False, False)
    """
    if fn is None:
        return functools.partial(z3_serialised, own_context=own_context)

    @functools.wraps(fn)
    def serialised(*args, **kwargs):
        with Z3_LOCK:
            outermost = not getattr(_CALL, "depth", 0)
            if outermost:
                _drain()
                _CALL.cache = {}
                if own_context:
                    _CALL.ctx = _context_of(args)
            _CALL.depth = getattr(_CALL, "depth", 0) + 1
            try:
                return fn(*args, **kwargs)
            except BaseException as err:
                _release(err)
                raise
            finally:
                _CALL.depth -= 1
                if outermost:
                    _CALL.ctx = _CALL.cache = None
                    _drain()

    serialised.z3_serialised = True
    return serialised


def _release(err: BaseException) -> None:
    """Clear the locals of the finished frames behind ``err`` (and the exceptions it
    was raised from) while holding the lock: they hold Z3 terms, which the caller's
    thread would otherwise free when it drops the exception -- outside the lock, while
    another thread works in Z3's context. The traceback's lines stay."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__
