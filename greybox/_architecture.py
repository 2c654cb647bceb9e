"""Network architectures as data: a tree of standard ``torch.nn`` layer names and
constructor arguments, written into a model file and rebuilt from it (never pickled code,
never ``eval``)."""

from __future__ import annotations

import inspect
import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from greybox.errors import CheckpointError

from ._file_checks import tensor_view
from ._names import _key

__all__ = ["ModulesNeeded", "architecture", "describe", "rebuild"]

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


def architecture(module: nn.Module) -> dict:
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



def rebuild(path, payload: Mapping, group: str,
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

    names = list(payload[group])
    arch = payload.get("architectures")
    descs = arch[group] if arch is not None else {}
    missing = [n for n in names if not isinstance(descs.get(n), Mapping)
               or "custom" in descs[n]]
    if missing:
        raise _modules_needed(path, group, names, missing, descs, arch is None)
    state = payload["state"]
    shared = {"modules": {}, "tensors": {}} if shared is None else shared
    modules, tensors = shared["modules"], shared["tensors"]
    out = {}
    for name in names:
        # the residual's names in the file are its module keys already
        prefix = f"{group}.{name}." if group == "residual" else f"{group}.{_key(name)}."
        module, views = _fitted(path, group, name, descs[name], state, prefix)
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


def _modules_needed(path, group: str, names: list, missing: list, descs: Mapping,
                    old: bool) -> ModulesNeeded:
    """The error for modules of ``group`` the file does not describe (``old``: a file
    written before architectures were saved), saying which to pass."""
    classes = [descs[n].get("custom") if isinstance(descs.get(n), Mapping) else None
               for n in missing]
    classes = [c if isinstance(c, str) else None for c in classes]
    if old:
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
    return ModulesNeeded(f"{path}: {what} cannot be rebuilt from the file: {reason}; "
                         f"{hint}", path=path, group=group, names=missing,
                         classes=classes, reason=reason, needed=names)


def _fitted(path, group: str, name: str, desc, state: Mapping, prefix: str):
    """``(module, views)``: the module ``desc`` describes, built on the meta device, its
    tensors checked against the file's (under ``prefix``); ``views``, where each of those
    lies in the file, by the module's state name."""
    try:
        with torch.device("meta"):   # no memory until the shapes match the file's
            module = _build(desc, "", [0])
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
            views[k] = tensor_view(got)
    return module, views
