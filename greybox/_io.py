"""Saving and loading grey-box models: rule text plus a state dict, read as data only."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
import stat
import tempfile
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import CheckpointError, GreyboxError, SaveError

__all__ = ["describe", "load", "save", "write_atomic"]

FORMAT = "greybox-model"
VERSION = 2
#: versions this greybox reads: 1 has no architecture descriptions (networks must be given)
READS = (1, 2)

#: A temporary file of ours (``.NAME.greybox-PID-RANDOM.tmp``) left by a killed save is
#: removed by the next save in its folder once its process is gone and it has not changed
#: for this many seconds, or in any case after ``_STALE_ALWAYS`` seconds.
_STALE_AFTER = 60.0
_STALE_ALWAYS = 24 * 3600.0
_TEMP = re.compile(r"^\..*\.greybox-(\d+)-[^.]*\.tmp$")


#: buffers added to GreyBox after checkpoints were first written; absent from older files
_LATER_BUFFERS = ("feature_min", "feature_max", "feature_step", "range_known")

def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _remove_stale_temps(directory: Path) -> None:
    """Delete temporary files that killed saves (of greybox) left in ``directory``."""
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if age > _STALE_ALWAYS or (age > _STALE_AFTER and not _alive(int(m.group(1)))):
                os.unlink(entry.path)
        except OSError:
            continue


def write_atomic(path, write, *, binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk and
    rename it into place: readers see the old file or the new one, never half of one.

    The file gets the mode of the file it replaces, or that of any new file (``0o666``
    less the umask). Temporary files left behind by killed saves in the same folder are
    removed. A missing folder, or one that cannot be written, raises :class:`SaveError`.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise SaveError(f"cannot save {path}: the folder {directory} {what}")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    _remove_stale_temps(directory)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.greybox-{os.getpid()}-",
                                   suffix=".tmp", dir=directory)
    except OSError as err:
        raise SaveError(f"cannot save {path}: cannot write in the folder {directory} "
                        f"({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                       {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if not hasattr(os, "fchmod"):  # pragma: no cover - Windows
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# architectures -------------------------------------------------------------------------------
# A network built from standard torch.nn layers is saved as data (a tree of layer names and
# constructor arguments) and rebuilt from it on load: never pickled code, never eval.

_CONV = {"in_channels": "int", "out_channels": "int", "kernel_size": "ints", "stride": "ints",
         "padding": "padding", "dilation": "ints", "groups": "int", "bias": "present",
         "padding_mode": "zeros|reflect|replicate|circular"}
_POOL = {"kernel_size": "ints", "stride": "ints", "padding": "ints", "ceil_mode": "bool"}
_NORM = {"num_features": "int", "eps": "float", "momentum": "float?", "affine": "bool",
         "track_running_stats": "bool", "bias": "present"}
#: the layers a file may describe: name -> (class, {constructor argument: kind}); a kind is
#: "int", "int?" (or None), "float", "float?", "bool", "ints" (an int or a tuple of ints),
#: "padding" (ints or "same"/"valid"), "present" (a bias: whether the module has one) or a
#: "|"-separated list of the strings allowed
_LAYERS: dict[str, tuple[type, dict[str, str]]] = {
    "Linear": (nn.Linear, {"in_features": "int", "out_features": "int", "bias": "present"}),
    "Conv1d": (nn.Conv1d, _CONV),
    "Conv2d": (nn.Conv2d, _CONV),
    "MaxPool1d": (nn.MaxPool1d, {**_POOL, "dilation": "ints", "return_indices": "bool"}),
    "MaxPool2d": (nn.MaxPool2d, {**_POOL, "dilation": "ints", "return_indices": "bool"}),
    "AvgPool1d": (nn.AvgPool1d, {**_POOL, "count_include_pad": "bool"}),
    "AvgPool2d": (nn.AvgPool2d, {**_POOL, "count_include_pad": "bool",
                                 "divisor_override": "int?"}),
    "BatchNorm1d": (nn.BatchNorm1d, _NORM),
    "BatchNorm2d": (nn.BatchNorm2d, _NORM),
    "LayerNorm": (nn.LayerNorm, {"normalized_shape": "ints", "eps": "float",
                                 "elementwise_affine": "bool", "bias": "present"}),
    "Dropout": (nn.Dropout, {"p": "float", "inplace": "bool"}),
    "ReLU": (nn.ReLU, {"inplace": "bool"}),
    "LeakyReLU": (nn.LeakyReLU, {"negative_slope": "float", "inplace": "bool"}),
    "ELU": (nn.ELU, {"alpha": "float", "inplace": "bool"}),
    "SiLU": (nn.SiLU, {"inplace": "bool"}),
    "GELU": (nn.GELU, {"approximate": "none|tanh"}),
    "Softplus": (nn.Softplus, {"beta": "float", "threshold": "float"}),
    "Tanh": (nn.Tanh, {}),
    "Sigmoid": (nn.Sigmoid, {}),
    "Identity": (nn.Identity, {}),
    "Flatten": (nn.Flatten, {"start_dim": "int", "end_dim": "int"}),
    "Unflatten": (nn.Unflatten, {"dim": "int", "unflattened_size": "ints"}),
    "Softmax": (nn.Softmax, {"dim": "int?"}),
    "LogSoftmax": (nn.LogSoftmax, {"dim": "int?"}),
}
_MAX_DEPTH, _MAX_LAYERS, _MAX_INT = 32, 10_000, 2 ** 31
_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")


def _accepts(cls: type, arg: str) -> bool:
    """Whether this torch's ``cls`` takes ``arg`` (``BatchNorm``'s ``bias`` is recent)."""
    return arg in inspect.signature(cls).parameters


def _plain(value):
    """A constructor argument as plain data (tuples and sizes as lists), or a marker that
    it is not plain data."""
    if isinstance(value, (tuple, list, torch.Size)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _Unplain


class _Unplain:
    pass


def _valid(value, kind: str) -> bool:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and -_MAX_INT < v < _MAX_INT

    if kind.endswith("?"):
        return value is None or _valid(value, kind[:-1])
    if kind == "int":
        return is_int(value)
    if kind == "float":
        return (is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if kind in ("bool", "present"):
        return isinstance(value, bool)
    if kind == "ints":
        return is_int(value) or (isinstance(value, list) and len(value) <= 8
                                 and all(is_int(v) for v in value))
    if kind == "padding":
        return value in ("same", "valid") or _valid(value, "ints")
    return isinstance(value, str) and value in kind.split("|")


def describe(module: nn.Module) -> dict | None:
    """A data-only description of ``module`` (JSON-like: layer names and constructor
    arguments) from which :func:`load` rebuilds the same architecture, or ``None`` when it
    is, or holds, anything else than ``nn.Sequential`` of the standard layers listed in
    ``_LAYERS`` (Linear, Conv1d/2d, pooling, BatchNorm1d/2d, LayerNorm, Dropout, the common
    activations, Flatten/Unflatten, Softmax/LogSoftmax, Identity): subclasses, modules
    with hooks or extra parameters are custom modules, which a file cannot rebuild.

    Examples
    --------
    >>> from torch import nn
    >>> describe(nn.Sequential(nn.Linear(30, 8), nn.Tanh(), nn.Linear(8, 1, bias=False)))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'type': 'Sequential', 'children': [['0', {'type': 'Linear', 'args': {'in_features': 30,
     'out_features': 8, 'bias': True}}], ['1', {'type': 'Tanh', 'args': {}}], ['2',
     {'type': 'Linear', 'args': {'in_features': 8, 'out_features': 1, 'bias': False}}]]}
    >>> class Mine(nn.Linear):
    ...     pass
    >>> describe(Mine(2, 2)) is None
    True
    """
    desc = _describe(module, 0)
    if desc is None:
        return None
    try:  # what the description builds must hold exactly the module's tensors
        with torch.device("meta"):
            built = _build(desc, "", [0])
    except CheckpointError:
        return None
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    return desc if want == got else None


def _describe(module: nn.Module, depth: int) -> dict | None:
    if depth > _MAX_DEPTH or module._forward_hooks or module._forward_pre_hooks \
            or "forward" in vars(module):
        return None
    if type(module) is nn.Sequential:
        children = []
        for name, child in module.named_children():
            d = _describe(child, depth + 1)
            if d is None or not _NAME.match(name):
                return None
            children.append([name, d])
        return {"type": "Sequential", "children": children}
    spec = _LAYERS.get(type(module).__name__)
    if spec is None or type(module) is not spec[0] or list(module.children()):
        return None
    cls, kinds = spec
    args = {}
    for arg, kind in kinds.items():
        if not _accepts(cls, arg):
            continue
        value = getattr(module, arg, None) is not None if kind == "present" \
            else _plain(getattr(module, arg, None))
        if not _valid(value, kind):
            return None
        args[arg] = value
    return {"type": type(module).__name__, "args": args}


def _build(desc, where: str, count: list, depth: int = 0) -> nn.Module:
    """The module ``desc`` describes (validated as data first: known layer names, known
    arguments of the expected kinds, bounded size); :class:`CheckpointError` otherwise."""
    here = where or "the top"
    count[0] += 1
    if depth > _MAX_DEPTH or count[0] > _MAX_LAYERS:
        raise CheckpointError(f"the description is deeper than {_MAX_DEPTH} levels or has "
                              f"more than {_MAX_LAYERS} layers")
    if not isinstance(desc, Mapping) or not isinstance(desc.get("type"), str):
        raise CheckpointError(f"the description at {here} is not a layer")
    kind = desc["type"]
    if kind == "Sequential":
        children = desc.get("children")
        if sorted(desc) != ["children", "type"] or not isinstance(children, list) or not all(
                isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)
                and _NAME.match(c[0]) for c in children):
            raise CheckpointError(f"the Sequential at {here} has malformed children")
        if len({c[0] for c in children}) != len(children):
            raise CheckpointError(f"the Sequential at {here} repeats a child's name")
        probe = nn.Sequential()
        clash = next((c[0] for c in children if hasattr(probe, c[0])), None)
        if clash is not None:   # torch raises a raw KeyError for these
            raise CheckpointError(f"the Sequential at {here} names a child {clash!r}, which "
                                  "is an attribute of nn.Sequential, not a layer name")
        return nn.Sequential(OrderedDict(
            (name, _build(child, f"{where}.{name}" if where else name, count, depth + 1))
            for name, child in children))
    spec = _LAYERS.get(kind)
    if spec is None:
        raise CheckpointError(f"the description at {here} names {kind!r}, which is not one "
                              "of the standard layers greybox rebuilds")
    cls, kinds = spec
    args = desc.get("args")
    if sorted(desc) != ["args", "type"] or not isinstance(args, Mapping):
        raise CheckpointError(f"the {kind} at {here} has no argument mapping")
    wanted = sorted(a for a in kinds if _accepts(cls, a))
    if sorted(args) != wanted:
        raise CheckpointError(f"the {kind} at {here} has arguments {sorted(args)}; expected "
                              f"{wanted}")
    kwargs = {}
    for arg, value in args.items():
        if not _valid(value, kinds[arg]):
            raise CheckpointError(f"the {kind} at {here} has {arg}={value!r}")
        kwargs[arg] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError) as err:
        raise CheckpointError(f"the {kind} at {here} cannot be built: {err}") from None


def _architecture(module: nn.Module) -> dict:
    """What a file says about a module: its description, or the class of a custom one."""
    desc = describe(module)
    if desc is not None:
        return desc
    cls = type(module)
    return {"custom": f"{cls.__module__}.{cls.__qualname__}"[:200]}


class ModulesNeeded(CheckpointError):
    """A saved model needs modules that the file cannot rebuild: custom networks, or a
    file written before architectures were saved. ``group`` is ``"networks"`` or
    ``"residual"``, ``names`` the ones missing, ``classes`` their class names (None for an
    old file) and ``reason`` why, in words."""

    def __init__(self, message: str, *, path, group: str, names: list[str],
                 classes: list[str | None], reason: str, needed: list[str]):
        super().__init__(message)
        self.path, self.group, self.names, self.classes = str(path), group, names, classes
        self.reason, self.needed = reason, needed


class NetworksMismatch(CheckpointError):
    """``networks=`` named other networks than the model's: ``expected`` and ``given``."""

    def __init__(self, message: str, *, path, expected: list[str], given: list[str]):
        super().__init__(message)
        self.path, self.expected, self.given = str(path), expected, given


def _rebuild(path, payload: Mapping, group: str,
             shared: dict | None = None) -> dict[str, nn.Module]:
    """The networks (``group="networks"``) or residuals the file describes, built and
    checked against the file's tensors; :class:`ModulesNeeded` when some are not
    described.

    A module saved under several names (one residual for two outputs) has the same
    tensors in the file under each: it is built once and shared again, as it was saved.
    Any other tensor the file shares between names is refused, since the rebuilt layers
    would each hold a copy of it (a small file naming one storage a thousand times would
    otherwise allocate it a thousand times). ``shared`` carries what was built between
    the calls for networks and for residuals: ``"modules"`` by description and tensors,
    ``"tensors"``, the name of the first state entry each tensor of the file was
    loaded under."""
    from ._names import _key

    names = list(payload[group])
    arch = payload.get("architectures")
    descs = arch[group] if arch is not None else {}
    missing = [n for n in names if not isinstance(descs.get(n), Mapping)
               or "custom" in descs[n]]
    if missing:
        classes = [descs[n].get("custom") if isinstance(descs.get(n), Mapping) else None
                   for n in missing]
        classes = [c if isinstance(c, str) else None for c in classes]
        if arch is None:
            reason = "the file was written before greybox saved architectures"
        else:
            shown = ", ".join(c for c in classes if c)
            one = len(missing) == 1
            reason = (f"{'it is a' if one else 'they are'} custom module{'' if one else 's'}"
                      f"{f' ({shown})' if shown else ''}, and a file holds data, never code")
        if group == "networks":
            what = f"network{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
            hint = "pass networks={" + ", ".join(f"{n!r}: module" for n in names) + "}"
        else:
            what = f"the residual network for {', '.join(map(repr, missing))}"
            hint = "pass residual=module" if len(names) == 1 else \
                "pass residual={" + ", ".join(f"{n!r}: module" for n in names) + "}"
        raise ModulesNeeded(f"{path}: {what} cannot be rebuilt from the file: {reason}; "
                            f"{hint}", path=path, group=group, names=missing,
                            classes=classes, reason=reason, needed=names)
    state = payload["state"]
    shared = {"modules": {}, "tensors": {}} if shared is None else shared
    modules, tensors = shared["modules"], shared["tensors"]
    out = {}
    for name in names:
        # the residual's names in the file are its module keys already
        prefix = f"{group}.{name}." if group == "residual" else f"{group}.{_key(name)}."
        try:
            with torch.device("meta"):   # no memory until the shapes match the file's
                module = _build(descs[name], "", [0])
        except CheckpointError as err:
            raise CheckpointError(f"{path}: the architecture of {group} {name!r}: {err}") \
                from None
        views = {}
        for k, v in module.state_dict().items():
            got = state.get(prefix + k)
            if got is None or tuple(got.shape) != tuple(v.shape):
                raise CheckpointError(
                    f"{path}: the architecture of {group} {name!r} does not fit its weights "
                    f"in the file: {prefix + k} is {list(v.shape)} in the description, "
                    f"{'absent' if got is None else list(got.shape)} in the file")
            if got.numel():
                views[k] = _view(got)
        same = (json.dumps(descs[name], sort_keys=True, default=repr),
                tuple(sorted(views.items())))
        if same in modules:                 # the module saved under another name
            out[name] = modules[same]
            continue
        for k, view in views.items():
            other = tensors.get(view)
            if other is not None:
                raise CheckpointError(
                    f"{path}: {prefix + k} is the same tensor in the file as {other}; "
                    f"greybox rebuilds {group} {name!r} from its description with a tensor "
                    f"of its own, so the weights it shares cannot be loaded as shared: "
                    f"pass {group}= with the modules that share them")
            tensors[view] = prefix + k
        out[name] = modules[same] = module.to_empty(device="cpu")  # all from the file
    return out


_META = ("format", "version", "rules", "filename", "semantics", "temperature", "networks",
         "residual")
#: header fields added later: covered by the digest when the file has them (an older
#: file's digest, computed without them, still matches)
_LATER_META = ("architectures", "scale_inputs")


def _digest(payload: Mapping) -> str:
    """SHA-256 of everything a model is rebuilt from: the header fields (the architecture
    descriptions among them) and, per state entry in name order, its name, dtype, shape and
    bytes."""
    h = hashlib.sha256()
    meta = {k: payload.get(k) for k in _META}
    meta.update({k: payload[k] for k in _LATER_META if k in payload})
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode("utf-8"))
    state = payload["state"]
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(json.dumps([name, str(t.dtype), list(state[name].shape)]).encode("utf-8"))
        if t.numel():   # hashed in place: no copy of the bytes
            h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


def save(model, path) -> None:
    """Write ``model`` to ``path``: its rule text, semantics, temperature, the names of its
    networks and residuals with a data-only description of each architecture built from
    standard ``torch.nn`` layers (see :func:`describe`), its state dict and a SHA-256 digest
    of them all. The file is written next to ``path`` and renamed into place, so a crash
    never leaves half a file behind."""
    from ._names import _key

    path = Path(path)
    residual = model.residual if model.residual is not None else {}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "rules": gr.to_text(model.kb),
        "filename": model.kb.filename,
        "semantics": model.semantics,
        "temperature": model.temperature,
        "networks": sorted(model.kb.networks),
        "residual": sorted(model.residual.keys()) if model.residual is not None else [],
        # the networks reading standardised table inputs (a file without this field was
        # written when every network did, and loads so)
        "scale_inputs": list(model.scaled_networks),
        "architectures": {
            "networks": {n: _architecture(model.networks[_key(n)])
                         for n in sorted(model.kb.networks)},
            "residual": {k: _architecture(residual[k]) for k in sorted(residual.keys())},
        },
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload["sha256"] = _digest(payload)
    write_atomic(path, lambda f: torch.save(payload, f))


def _check_archive(path: Path) -> None:
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


def _view(t: torch.Tensor) -> tuple:
    """Where a tensor's elements are: its storage, offset, shape, strides and dtype."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(),
            t.dtype)


def _check_storage(path, state: Mapping) -> None:
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
        shared.setdefault(v.untyped_storage().data_ptr(), {}).setdefault(_view(v), k)
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


def _check_rereads(path, state: Mapping) -> None:
    """CheckpointError when the digest would read more than ``_REREADS`` times the file's
    size: the state names the tensors it stores under that many names."""
    size = Path(path).stat().st_size
    read = sum(v.numel() * v.element_size() for v in state.values())
    if read > _REREADS * max(size, 1):
        names: dict[tuple, list[str]] = {}
        for k, v in state.items():
            if v.numel():
                names.setdefault(_view(v), []).append(k)
        most = max(names.values(), key=len)
        raise CheckpointError(
            f"{path}: the state names {read:,} bytes of tensors in a file of {size:,} bytes, "
            f"more than {_REREADS} times its size: its tensors are listed under many names "
            f"(one under {len(most):,} names: {', '.join(map(repr, most[:3]))}, ...); "
            "refused before reading them")


def _check_decisions(path, kb, state: Mapping) -> None:
    """CheckpointError when the decided outputs of ``kb`` (the rules stored in the file)
    need more biases than the file's state holds numbers: the model keeps a bias per value
    of each decided output (up to ``MAX_DECIDED_VALUES`` each) and every one of them is in
    the state, so a few lines of rules deciding many outputs over wide ranges are refused
    before the model is built, not after it has allocated them. Counted from the parsed
    rules alone, as the model counts them (one bias per output family)."""
    from greybox.rules import ast as A

    from ._names import _key
    from ._parameters import MAX_DECIDED_VALUES, owners

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
    views = {_view(t): t.numel() for t in state.values()}
    held = sum(views.values())
    if total > held:
        big = sorted(need.values(), key=lambda vn: -vn[1])
        shown = ", ".join(f"{v!r} {n:,}" for v, n in big[:3])
        raise CheckpointError(
            f"{path}: the rules stored in the file decide {len(need):,} output(s) whose "
            f"biases need {total:,} numbers ({shown}{', ...' if len(big) > 3 else ''}) but "
            f"the file's state holds {held:,} numbers in all; refused before building the "
            "model")


def _check_device(path, map_location) -> None:
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


def _read(path, map_location):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    _check_device(path, map_location)
    _check_archive(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            AttributeError, TypeError, ImportError) as err:  # what torch raises on bad files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable greybox model ({first})") from None
    except Exception as err:  # unpickling errors of foreign files  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable greybox model ({type(err).__name__})") \
            from None
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a greybox model file (no '{FORMAT}' header)")
    version = payload.get("version")
    if isinstance(version, bool) or version not in READS:
        raise CheckpointError(f"{path}: model format version {version!r}; this greybox reads "
                              f"versions {', '.join(map(str, READS))}")
    needed = ("rules", "semantics", "temperature", "networks", "residual", "state") + (
        ("architectures",) if version >= 2 else ())
    for key in needed:
        if key not in payload:
            raise CheckpointError(f"{path}: model file lacks {key!r}")
    _check_payload(path, payload)
    return payload


def _check_payload(path, payload: Mapping) -> None:
    """Types, digest and finiteness of what the file holds: a corrupted or doctored file
    is refused rather than loaded as a different model."""
    for key in ("rules", "semantics"):
        if not isinstance(payload[key], str):
            raise CheckpointError(f"{path}: {key!r} must be text, got "
                                  f"{type(payload[key]).__name__}")
    if payload.get("filename") is not None and not isinstance(payload["filename"], str):
        raise CheckpointError(f"{path}: 'filename' must be text or None")
    for key in ("networks", "residual"):
        names = payload[key]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise CheckpointError(f"{path}: {key!r} must be a list of names, got {names!r}")
    if "architectures" in payload:
        arch = payload["architectures"]
        if not isinstance(arch, Mapping) or sorted(arch) != ["networks", "residual"]:
            raise CheckpointError(f"{path}: 'architectures' must map 'networks' and "
                                  "'residual' to descriptions")
        for key in ("networks", "residual"):
            if not isinstance(arch[key], Mapping) or sorted(arch[key]) != sorted(payload[key]):
                raise CheckpointError(f"{path}: the architectures of the {key} do not name "
                                      f"{sorted(payload[key])}")
            for name, desc in arch[key].items():
                if not isinstance(desc, Mapping):
                    raise CheckpointError(f"{path}: the architecture of {key} {name!r} is a "
                                          f"{type(desc).__name__}, not a description")
    if "scale_inputs" in payload:
        scaled = payload["scale_inputs"]
        if not isinstance(scaled, (list, tuple)) or not all(
                isinstance(n, str) and n in payload["networks"] for n in scaled):
            raise CheckpointError(f"{path}: 'scale_inputs' must list networks of the model "
                                  f"({payload['networks']}), got {scaled!r}")
    temp = payload["temperature"]
    if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not (
            0 < temp < float("inf")):
        raise CheckpointError(f"{path}: the temperature must be a finite positive number, "
                              f"got {temp!r}")
    state = payload["state"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the state in the file is not a mapping")
    for k, v in state.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{path}: the state has a key {k!r} that is not a name")
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: state entry {k!r} is a {type(v).__name__}, not a "
                                  "tensor")
    _check_storage(path, state)
    _check_rereads(path, state)
    if "sha256" in payload:  # files written before the digest existed have none
        try:
            digest = _digest(payload)
        except (RuntimeError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: the state cannot be read ({err})") from None
        if digest != payload["sha256"]:
            raise CheckpointError(f"{path}: corrupted file: its contents do not match the "
                                  "SHA-256 digest stored when it was saved")
    seen = set()
    for k, v in state.items():
        if v.numel() and _view(v) in seen:
            continue     # the same tensor under another name: checked once
        seen.add(_view(v))
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            what = "NaN" if bool(torch.isnan(v).any()) else "an infinite value"
            raise CheckpointError(f"{path}: tensor {k!r} holds {what}; a model with "
                                  "non-finite parameters or buffers is refused")


def load(path, *, networks: Mapping[str, nn.Module] | None = None,
         residual: nn.Module | Mapping[str, nn.Module] | None = None,
         map_location="cpu"):
    """Load a model written by :meth:`GreyBox.save`.

    Parameters
    ----------
    path : str or Path
    networks, residual
        The modules (architectures) to load the weights into. Not needed for networks
        and residuals built from standard ``torch.nn`` layers (see :func:`describe`): the
        file describes those and they are rebuilt from it. A custom module, or a file
        written before descriptions were saved, needs them: ``networks`` then names every
        network of the model.
    map_location
        Where tensors go (default CPU): a model saved on a GPU loads on a CPU-only machine.

    Raises
    ------
    CheckpointError
        The file is missing, corrupted (a CRC-32 or the SHA-256 digest stored by
        :func:`save` does not match), foreign, from another version, holds NaN or infinite
        numbers, describes an architecture that does not match its weights, needs a
        custom module that was not given, or does not match the networks given. A file
        whose rules would build more biases than its state holds, or whose state lists
        its tensors under so many names that reading them would take more than 64 times
        the file's size, is refused before the model is built or the state read.

    Examples
    --------
    >>> import tempfile, os, greybox as gb
    >>> from torch import nn
    >>> model = gb.GreyBox("input x: real  output y: bool  rule r: x > ~1 -> y",
    ...                    semantics="product",
    ...                    residual=nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1)))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> model.save(path)
    >>> loaded = gb.load(path)          # the residual is rebuilt from the file
    >>> loaded.to_kb() == model.to_kb(), loaded.residual["y"][1]
    (True, ReLU())
    """
    from ._model import GreyBox
    from ._names import _key

    given_networks = networks is not None
    payload = _read(path, map_location)
    try:
        kb = gr.parse(payload["rules"], filename=payload.get("filename"))
    except GreyboxError as err:
        raise CheckpointError(f"{path}: the rules stored in the file do not parse: {err}") \
            from None
    _check_decisions(path, kb, payload["state"])
    shared: dict = {"modules": {}, "tensors": {}}   # a module saved under several names
    if networks is None:
        networks = _rebuild(path, payload, "networks", shared)
    given = sorted(networks or {})
    if given != list(payload["networks"]):
        raise NetworksMismatch(f"{path}: the model uses networks {payload['networks']}; "
                               f"networks= gave {given}", path=path,
                               expected=list(payload["networks"]), given=given)
    if residual is None and payload["residual"]:
        built = _rebuild(path, payload, "residual", shared)   # keyed as the model's residual dict
        residual = {next((d for d in kb.decided if _key(d) == k), k): m
                    for k, m in built.items()}
    try:
        model = GreyBox(kb, networks, semantics=payload["semantics"],
                        residual=residual, temperature=payload["temperature"],
                        # files written before the switch: every network read its table
                        # inputs standardised, and keeps doing so
                        scale_inputs=list(payload.get("scale_inputs", kb.networks)))
    except GreyboxError as err:
        raise CheckpointError(f"{path}: cannot rebuild the model: {err}") from None
    if isinstance(map_location, (str, torch.device)):
        try:
            model.to(map_location)
        except (RuntimeError, TypeError, AssertionError) as err:
            raise CheckpointError(f"cannot move the model to {map_location!r}: {err}") from None
    state = payload["state"]
    own = model.state_dict()
    # statistics added after a file was written (the training range and precision of
    # the inputs) keep their defaults: an older file loads as "range not known"
    state = dict(state)
    for k in _LATER_BUFFERS:
        if k in own and k not in state:
            state[k] = own[k]
    state = model._upgrade_state(state)   # one ~ threshold per copy, before they shared one
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if (missing or unexpected) and all(k.startswith(("rules.", "constraints."))
                                       for k in (*missing, *unexpected)):
        raise CheckpointError(
            f"{path}: the rule parameters stored in the file are not the ones its rules "
            f"make (missing: {missing[:5]}, unexpected: {unexpected[:5]}); files written "
            "before the members of a rule family shared one weight and one threshold per "
            "~ number cannot be read: build the model from the rules (to_text of its "
            "knowledge base) and train it again")
    if missing or unexpected:
        made = "the networks given" if given_networks else \
            "the model its rules and architectures make"
        raise CheckpointError(f"{path}: the file's parameters do not match {made} "
                              f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{path}: parameter {k!r} has shape {list(state[k].shape)} in "
                              f"the file but {list(own[k].shape)} in the model")
    for k in own:   # load_state_dict would cast, dropping an imaginary part or fractions
        mine, theirs = own[k].dtype, state[k].dtype
        if (theirs.is_complex and not mine.is_complex) or (
                (theirs.is_floating_point or theirs.is_complex)
                and not (mine.is_floating_point or mine.is_complex)):
            raise CheckpointError(f"{path}: tensor {k!r} is {str(theirs).removeprefix('torch.')}"
                                  f" in the file but {str(mine).removeprefix('torch.')} in the "
                                  "model; converting it would lose part of each value")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: the state does not fit the model ({first})") from None
    return model
