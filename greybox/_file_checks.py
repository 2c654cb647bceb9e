"""Checks of a model file as ``torch.load`` returns it, before anything reads its tensors:
the archive, the tensors' storage, the size of what the digest reads, the biases the rules
need, the device asked for."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from greybox.errors import CheckpointError
from greybox.rules import ast as A

from ._names import _key
from ._parameters import MAX_DECIDED_VALUES, owners

__all__ = ["check_archive", "check_decisions", "check_device", "check_rereads",
           "check_storage", "tensor_view"]

def check_archive(path: Path) -> None:
    """Every member of the zip archive torch writes is stored uncompressed, the members
    do not overlap (together they are no larger than the file) and each matches its
    CRC-32: what ``torch.load`` allocates for the tensors' storages is then never more
    than the file's size (a compressed or overlapping member would let a small file
    allocate gigabytes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
            held = sum(m.file_size for m in members)
            size = path.stat().st_size
            bad = None if packed or held > size else archive.testzip()
    except zipfile.BadZipFile:
        return  # not a zip archive at all: torch.load says what it is
    except Exception as err:  # zlib, struct or OS errors of a damaged archive  # noqa: BLE001
        raise CheckpointError(f"{path}: corrupted archive ({type(err).__name__}: {err})") \
            from None
    if packed:
        raise CheckpointError(f"{path}: the archive member {packed[0]!r} is compressed; "
                              "torch.save stores every member uncompressed, so that a file "
                              "never loads into more memory than its size")
    if held > size:
        raise CheckpointError(f"{path}: the archive's members hold {held:,} bytes in a file "
                              f"of {size:,} bytes (members overlap)")
    if bad is not None:
        raise CheckpointError(f"{path}: corrupted file: {bad!r} fails its CRC-32 check")


def tensor_view(t: torch.Tensor) -> tuple:
    """Where a tensor's elements are: its storage, offset, shape, strides and dtype."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(),
            t.dtype)


def check_storage(path, state: Mapping) -> None:
    """Each tensor of ``state`` is dense, its elements distinct (no stride of 0, no
    overlapping strides) and within the bytes its storage holds in the file, and tensors
    sharing a storage together need no more than it holds: the model built from the file
    then holds no more numbers than the file stores (a 4.8 KB file whose ``expand``-ed
    weights claim a 12000x12000 layer is refused before anything that large exists).
    Checked on the tensors as ``torch.load`` returns them, before anything reads them."""
    shared: dict[int, dict[tuple, str]] = {}
    for k, v in state.items():
        if v.layout != torch.strided:
            raise CheckpointError(f"{path}: tensor {k!r} is {v.layout}; a model's state "
                                  "holds dense tensors only")
        numel = v.numel()
        if numel == 0:
            continue
        item, offset = v.element_size(), v.storage_offset()
        stored = v.untyped_storage().nbytes()
        need = numel * item
        span, repeats = 1, False        # elements reached by the dimensions so far
        for stride, n in sorted((st, n) for n, st in zip(v.shape, v.stride()) if n > 1):
            repeats |= stride < span
            span += stride * (n - 1)
        end = (offset + span) * item
        if repeats or end > stored:
            held = max(0, stored - offset * item)
            why = (f"its elements repeat (strides {list(v.stride())})" if repeats else
                   f"it reaches byte {end:,} of a storage of {stored:,} bytes (offset "
                   f"{offset:,}, strides {list(v.stride())})")
            raise CheckpointError(
                f"{path}: tensor {k!r} of shape {list(v.shape)} needs {need:,} bytes "
                f"({numel:,} x {item}) but the file stores {held:,} bytes for it: {why}; "
                "refused before allocating it")
        shared.setdefault(v.untyped_storage().data_ptr(), {}).setdefault(tensor_view(v), k)
    for views in shared.values():
        if len(views) < 2:
            continue
        need = sum(math.prod(view[2]) * state[k].element_size() for view, k in views.items())
        stored = state[next(iter(views.values()))].untyped_storage().nbytes()
        if need > stored:
            names = sorted(views.values())
            raise CheckpointError(f"{path}: tensors {', '.join(map(repr, names[:5]))} share "
                                  f"one storage of {stored:,} bytes but need {need:,} bytes "
                                  "together (they overlap); refused before allocating them")


#: how many times its own size the digest may read of a file: a tensor the file stores once
#: is read once per name it has in the state (a residual shared by several outputs is
#: saved under each output's name), so a small file naming one tensor under thousands of
#: names is refused rather than hashed thousands of times
_REREADS = 64


def check_rereads(path, state: Mapping) -> None:
    """CheckpointError when the digest would read more than ``_REREADS`` times the file's
    size: the state names the tensors it stores under that many names."""
    size = Path(path).stat().st_size
    read = sum(v.numel() * v.element_size() for v in state.values())
    if read > _REREADS * max(size, 1):
        names: dict[tuple, list[str]] = {}
        for k, v in state.items():
            if v.numel():
                names.setdefault(tensor_view(v), []).append(k)
        most = max(names.values(), key=len)
        raise CheckpointError(
            f"{path}: the state names {read:,} bytes of tensors in a file of {size:,} bytes, "
            f"more than {_REREADS} times its size: its tensors are listed under many names "
            f"(one under {len(most):,} names: {', '.join(map(repr, most[:3]))}, ...); "
            "refused before reading them")


def check_decisions(path, kb, state: Mapping) -> None:
    """CheckpointError when the decided outputs of ``kb`` (the rules stored in the file)
    need more biases than the file's state holds numbers: the model keeps a bias per value
    of each decided output (up to ``MAX_DECIDED_VALUES`` each) and every one of them is in
    the state, so a few lines of rules deciding many outputs over wide ranges are refused
    before the model is built, not after it has allocated them. Counted from the parsed
    rules alone, as the model counts them (one bias per output family)."""
    owner = owners(kb)
    need: dict[str, tuple[str, int]] = {}
    for v in kb.decided:
        key = _key(owner.get(("var", v), v))
        t = kb.variables[v].type
        size = 1 if (isinstance(t, A.BoolType) or not A.is_finite_type(t)
                     or v in kb.additive) else A.domain(t).size
        if key not in need and size <= MAX_DECIDED_VALUES:  # larger: the model refuses it
            need[key] = (v, size)
    total = sum(n for _, n in need.values())
    views = {tensor_view(t): t.numel() for t in state.values()}
    held = sum(views.values())
    if total > held:
        big = sorted(need.values(), key=lambda vn: -vn[1])
        shown = ", ".join(f"{v!r} {n:,}" for v, n in big[:3])
        raise CheckpointError(
            f"{path}: the rules stored in the file decide {len(need):,} output(s) whose "
            f"biases need {total:,} numbers ({shown}{', ...' if len(big) > 3 else ''}) but "
            f"the file's state holds {held:,} numbers in all; refused before building the "
            "model")


def check_device(path, map_location) -> None:
    """CheckpointError, before anything is read, when ``map_location`` names a device
    this machine does not have (``"cuda"`` without CUDA, ``"cuda:3"`` with two GPUs):
    torch would fail inside the unpickler and the file would look unreadable."""
    if not isinstance(map_location, (str, torch.device)):
        return    # a mapping or function: torch applies it
    try:
        dev = torch.device(map_location)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: map_location={map_location!r} is not a device "
                              f"({str(err).strip().splitlines()[0]})") from None
    if dev.type in ("cpu", "meta"):
        return
    backend = getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if dev.type == "mps":
        available = torch.backends.mps.is_available
    if available is None or not available():
        raise CheckpointError(f"{path}: cannot load onto {map_location!r}: no "
                              f"{dev.type.upper()} device is available on this machine; "
                              "pass map_location='cpu'")
    count = getattr(backend, "device_count", None)
    if dev.index is not None and count is not None and dev.index >= count():
        raise CheckpointError(f"{path}: cannot load onto {map_location!r}: this machine has "
                              f"{count()} {dev.type.upper()} device(s), numbered from 0; "
                              f"pass map_location='{dev.type}:0' or 'cpu'")
