"""Scaling out: per-row work through joblib, tables larger than memory by Dask partitions.

No scheduler of greybox's own. Per-row explanations (:func:`reason`,
:func:`counterfactual`, :func:`counterfactuals` given a list of row labels,
:func:`verify` given a list of properties, :func:`explain` by chunks of rows) run as
``joblib.Parallel`` tasks: ``n_jobs=2`` uses joblib's default backend (loky: worker
processes, each with its own Z3 and one torch thread), and ``with
joblib.parallel_config(backend="dask")`` (a ``dask.distributed.Client`` open) or
``backend="ray"`` (after ``ray.util.joblib.register_ray()``) sends the same tasks to a
cluster. Threads would not help: greybox serialises Z3 across threads
(:data:`greybox.rules.Z3_LOCK`). The model travels pickled; the solver state is built
in the worker, row by row, so each row's ``timeout`` holds for that row.

Tables larger than memory, by Dask partitions: :mod:`greybox.explain._partitions`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pickle
import threading
import warnings

import numpy as np
import pandas as pd

from greybox.errors import GreyboxError, ModelError

#: held by explanations computed in the caller's process from several threads
_IN_PROCESS = threading.RLock()

#: chunks of rows per worker: enough for the load to even out, few enough that the model
#: is sent (pickled) only a few times per worker
CHUNKS_PER_JOB = 4


def many(row) -> bool:
    """Whether ``row`` names several rows (a list, array, range or Index of labels) rather
    than one label (a tuple is one label of a MultiIndex)."""
    return isinstance(row, (list, range, np.ndarray, pd.Index, pd.Series))


def _one_thread(parent: int) -> None:
    """In a worker process (not the caller's, nor a thread of it): one torch thread, so
    that n workers use n cores."""
    if os.getpid() != parent:
        import torch

        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)


def _named(err: BaseException, label, what: str) -> GreyboxError:
    """``err`` as a greybox error whose message names the row (or property) ``label``."""
    text = str(err)
    head = f"{what} {label!r}"
    if isinstance(err, GreyboxError):
        if text.startswith(head):
            return err
        try:
            named = type(err)(f"{head}: {text}")
        except TypeError:   # an error class with other constructor arguments
            named = ModelError(f"{head}: {text}")
        return named
    return ModelError(f"{head}: {type(err).__name__}: {text}")


class _Shipped:
    """The model as the tasks carry it: itself within this process; pickled once per call
    (not once per chunk) for other processes, and unpickled once per worker process (the
    worker keeps the last model it was sent, by the digest of its pickle)."""

    def __init__(self, model):
        self.model = model
        self._pickled: tuple[str, bytes] | None = None

    def __reduce__(self):
        if self._pickled is None:
            data = pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL)
            self._pickled = (hashlib.sha256(data).hexdigest(), data)
        return _unshipped, self._pickled


#: the last model a worker process was sent: ``{digest: _Shipped}``
_RECEIVED: dict = {}


def _unshipped(digest: str, data: bytes) -> _Shipped:
    found = _RECEIVED.get(digest)
    if found is None:
        found = _Shipped(pickle.loads(data))
        _RECEIVED.clear()
        _RECEIVED[digest] = found
    return found


def _chunk(fn, shipped: _Shipped, parent: int, tasks: list, options: dict,
           what: str) -> tuple:
    """``fn(model, data, label, **options)`` for each ``(label, data)`` of ``tasks``, in
    order, in a worker: ``(results, None)``, or the results before the first error and
    that error, naming its row (handed back, so that the caller raises the first error
    in row order, as the serial run does)."""
    _one_thread(parent)
    model = shipped.model
    out = []
    for label, data in tasks:
        try:
            out.append(fn(model, data, label, **options))
        except Exception as err:   # noqa: BLE001 -- named and re-raised as greybox's own
            return out, _named(err, label, what)
    return out, None


def _rows_of(batch, positions: list[int]):
    """A compact batch of the rows at ``positions`` (their labels kept), holding only those
    rows' values, so that it pickles small."""
    import torch

    from greybox import Batch

    rows = torch.as_tensor(positions, dtype=torch.long)
    values = {k: v[rows.to(v.device)] for k, v in batch.values.items()}
    columns = {k: np.asarray(c)[positions] for k, c in batch.columns.items()}
    out = Batch(values, len(positions), batch.index[positions], columns)
    out.overrides = {k: v[rows.to(v.device)] for k, v in batch.overrides.items()}
    return out


def run_tasks(fn, model, tasks: list, options: dict, n_jobs, what: str = "row") -> list:
    """``fn(model, data, label, **options)`` for every ``(label, data)`` of ``tasks`` as
    joblib tasks (a few chunks per worker), the results in the order of ``tasks``."""
    import joblib

    if not tasks:
        return []
    jobs = max(1, joblib.effective_n_jobs(n_jobs))
    size = max(1, -(-len(tasks) // (jobs * CHUNKS_PER_JOB)))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    parent = os.getpid()
    shipped = _Shipped(model)
    # in order, as they come: the first error in row order stops the rest (where the
    # backend hands results back as they come: Ray's computes them all first)
    backend, _ = joblib.parallel.get_active_backend()
    as_ = "generator" if getattr(backend, "supports_return_generator", False) else "list"
    done = joblib.Parallel(n_jobs=n_jobs, return_as=as_)(
        joblib.delayed(_chunk)(fn, shipped, parent, c, options, what) for c in chunks)
    out = []
    for part, err in done:
        out += part
        if err is not None:
            if as_ == "generator":
                with warnings.catch_warnings():   # joblib's note on the tasks not waited for
                    warnings.simplefilter("ignore", UserWarning)
                    done.close()
            raise err
    return out


def per_row(fn):
    """Decorate a per-row entry point ``fn(model, batch, row, ..., n_jobs=None)``: given a
    list of row labels, it runs once per row (in parallel through joblib by ``n_jobs``)
    and returns the list of results in that order. Applied outside
    :func:`~greybox.rules.engine.z3_serialised`, so that the caller holds no Z3 lock while
    worker threads (joblib's threading backend) wait for it."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def rows(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        labels = bound.arguments.get("row")
        if not many(labels):
            return fn(*args, **kwargs)
        from .formal._row import row_position

        model, data = bound.arguments["model"], bound.arguments["batch"]
        options = {k: v for k, v in bound.arguments.items()
                   if k not in ("model", "batch", "row", "n_jobs")}
        batch = model.batch(data)
        if batch.n == 0:
            raise ModelError("no rows to explain")
        labels = list(labels)
        positions = [row_position(batch.index, r) for r in labels]
        tasks = [(label, _rows_of(batch, [p])) for label, p in zip(labels, positions)]
        return run_tasks(rows, model, tasks, options, bound.arguments.get("n_jobs"))

    return rows


def per_property(fn):
    """Decorate :func:`verify`: given a list of properties, it verifies each (in parallel
    through joblib by ``n_jobs``) and returns the list in that order; outside the Z3
    lock, as :func:`per_row`."""

    @functools.wraps(fn)
    def props(model, prop, **options):
        if not isinstance(prop, (list, tuple)):
            return fn(model, prop, **options)
        n_jobs = options.pop("n_jobs", None)
        return verify_many(props, model, list(prop), options, n_jobs)

    return props


def _verify_one(model, prop, label, verify, **options):
    return verify(model, prop, **options)


def verify_many(verify, model, props: list, options: dict, n_jobs) -> list:
    """``verify`` (:func:`greybox.explain.formal.verify`, handed in by it) of each property
    of ``props`` (through joblib), in order."""
    tasks = [(p if isinstance(p, str) else i, p) for i, p in enumerate(props)]
    return run_tasks(_verify_one, model, tasks, {**options, "verify": verify}, n_jobs,
                     "property")


# ---------------------------------------------------------------- suggest's candidates
class Ahead:
    """:meth:`_Measure.run` of the candidates a search asks for, measured a wave of
    ``2 * n_jobs`` at a time through joblib: asked for a candidate not measured yet, it
    measures it with the next candidates of ``order`` not measured or seen yet, in
    parallel; the search consumes them in its own order, so it decides what the serial
    search decides (a wave may measure candidates the search then does not ask for)."""

    def __init__(self, measure, order: list, key, n_jobs):
        import joblib

        self.measure, self.order, self.key, self.n_jobs = measure, order, key, n_jobs
        self.jobs = max(1, joblib.effective_n_jobs(n_jobs))
        self.first: dict = {}
        for i, c in enumerate(order):
            self.first.setdefault(key(c), i)
        self.done: dict = {}

    def run(self, c, seen: set):
        """The measured Suggestion of candidate ``c`` (or why it is dropped)."""
        if self.jobs == 1:
            return self.measure.run(c.edits, c.kind)
        k = self.key(c)
        if k not in self.done:
            wave, keys = [c], [k]
            for d in self.order[self.first.get(k, len(self.order)) + 1:]:
                if len(wave) >= 2 * self.jobs:
                    break
                kd = self.key(d)
                if kd in self.done or kd in seen or kd in keys:
                    continue
                wave.append(d)
                keys.append(kd)
            tasks = [("; ".join(e.describe() for e in d.edits), (d.edits, d.kind))
                     for d in wave]
            got = run_tasks(_measured, self.measure, tasks, {"parent": os.getpid()},
                            self.n_jobs, "candidate")
            self.done.update(zip(keys, got))
        return self.done.pop(k)


def _measured(measure, payload, label, parent: int):
    edits, kind = payload
    if os.getpid() == parent:   # threads of this process: one rebuild at a time
        with _IN_PROCESS:
            return measure.run(edits, kind)
    return measure.run(edits, kind)


# ---------------------------------------------------------------- explain by chunks
def explain_chunks(explain, model, data, output, options: dict, n_jobs):
    """``explain`` (:func:`greybox.explain.explain`, handed in by it) of the rows of
    ``data`` in chunks (through joblib), put together as one :class:`Explanation`, the
    rows in their order."""
    import joblib
    import torch

    batch = model.batch(data)
    jobs = max(1, joblib.effective_n_jobs(n_jobs))
    if jobs == 1 or batch.n < 2:
        return explain(model, batch, output, **options)
    k = min(batch.n, jobs)
    bounds = np.linspace(0, batch.n, k + 1).astype(int)
    tasks = [(f"{batch.index[a]!r}..{batch.index[b - 1]!r}",
              _rows_of(batch, list(range(a, b))))
             for a, b in zip(bounds[:-1], bounds[1:])]
    parts = run_tasks(_explain_chunk, model, tasks,
                      {"output": output, "parent": os.getpid(), "explain": explain,
                       **options}, n_jobs,
                      "rows")

    def frames(name):
        got = [getattr(p, name) for p in parts]
        if all(len(f) == 0 for f in got):
            return got[0]
        return pd.concat(got, ignore_index=name != "decision")

    def tensors(name):
        out = {}
        for key in getattr(parts[0], name):
            vs = [getattr(p, name)[key] for p in parts]
            out[key] = None if any(v is None for v in vs) else torch.cat(vs, 0) \
                if isinstance(vs[0], torch.Tensor) else vs[0]
        return out

    first = parts[0]
    return type(first)(   # the Explanation class, not imported: it imports the formal layer
        output=first.output, semantics=first.semantics, index=batch.index,
        decision=frames("decision"), rules=frames("rules"), concepts=frames("concepts"),
        attributions=tensors("attributions"), deltas=tensors("deltas"),
        methods=dict(first.methods), parameters=frames("parameters"),
        top_parameters=frames("top_parameters"), completeness=frames("completeness"),
        _model=model, _batch=batch, _values=tensors("_values"))


def _explain_chunk(model, data, label, parent: int, explain, **options):
    from dataclasses import replace

    if os.getpid() == parent:
        # threads of the caller's process (joblib's threading backend, Dask workers in
        # process) share the model, which explain switches to evaluation mode and
        # ablates, and torch.func's vmap: one at a time
        with _IN_PROCESS:
            ex = explain(model, data, **options, n_jobs=None)
    else:
        ex = explain(model, data, **options, n_jobs=None)
    return replace(ex, _model=None, _batch=None)   # the caller has both: not sent back
