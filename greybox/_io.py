"""Loading grey-box models: rule text plus a state dict, read as data only.

The writing side is :mod:`greybox._save` (the format, the digest), the architectures
:mod:`greybox._architecture`, the checks of a file's tensors :mod:`greybox._file_checks`,
atomic writes :mod:`greybox._atomic`; their names used elsewhere are importable from here
as before."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import CheckpointError, GreyboxError

from ._architecture import ModulesNeeded, _build, describe, rebuild  # noqa: F401
from ._atomic import write_atomic
from ._file_checks import (
    check_archive,
    check_decisions,
    check_device,
    check_rereads,
    check_storage,
    tensor_view,
)
from ._model import GreyBox
from ._names import _key
from ._parameters import RuleIndex
from ._save import _LATER_META, _META, FORMAT, READS, VERSION, _digest, save  # noqa: F401
from .semantics._sampled import SAMPLES

__all__ = ["describe", "load", "save", "write_atomic"]

#: buffers added to GreyBox after checkpoints were first written; absent from older files
_LATER_BUFFERS = ("feature_min", "feature_max", "feature_step", "range_known")


class NetworksMismatch(CheckpointError):
    """``networks=`` named other networks than the model's: ``expected`` and ``given``."""

    def __init__(self, message: str, *, path, expected: list[str], given: list[str]):
        super().__init__(message)
        self.path, self.expected, self.given = str(path), expected, given


def _read(path, map_location):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    check_device(path, map_location)
    check_archive(path)
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
    _check_header(path, payload)
    state = payload["state"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the state in the file is not a mapping")
    for k, v in state.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{path}: the state has a key {k!r} that is not a name")
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: state entry {k!r} is a {type(v).__name__}, not a "
                                  "tensor")
    check_storage(path, state)
    check_rereads(path, state)
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
        if v.numel() and tensor_view(v) in seen:
            continue     # the same tensor under another name: checked once
        seen.add(tensor_view(v))
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            what = "NaN" if bool(torch.isnan(v).any()) else "an infinite value"
            raise CheckpointError(f"{path}: tensor {k!r} holds {what}; a model with "
                                  "non-finite parameters or buffers is refused")


def _check_header(path, payload: Mapping) -> None:
    """The types of the header fields: text, lists of names, architecture descriptions,
    networks that read standardised inputs, a finite positive temperature."""
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

    payload = _read(path, map_location)
    try:
        kb = gr.parse(payload["rules"], filename=payload.get("filename"))
    except GreyboxError as err:
        raise CheckpointError(f"{path}: the rules stored in the file do not parse: {err}") \
            from None
    check_decisions(path, kb, payload["state"])
    model = _model(path, payload, kb, networks, residual)
    if isinstance(map_location, (str, torch.device)):
        try:
            model.to(map_location)
        except (RuntimeError, TypeError, AssertionError) as err:
            raise CheckpointError(f"cannot move the model to {map_location!r}: {err}") from None
    own = model.state_dict()
    state = _upgraded(model, payload["state"], own)
    _check_state(path, state, own, given_networks=networks is not None)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: the state does not fit the model ({first})") from None
    return model


def _model(path, payload: Mapping, kb, networks, residual) -> GreyBox:
    """The model the file's header describes (its weights not loaded yet), with the
    networks and residuals given or rebuilt from the file's architectures."""
    shared: dict = {"modules": {}, "tensors": {}}   # a module saved under several names
    if networks is None:
        networks = rebuild(path, payload, "networks", shared)
    given = sorted(networks or {})
    if given != list(payload["networks"]):
        raise NetworksMismatch(f"{path}: the model uses networks {payload['networks']}; "
                               f"networks= gave {given}", path=path,
                               expected=list(payload["networks"]), given=given)
    if residual is None and payload["residual"]:
        built = rebuild(path, payload, "residual", shared)   # keyed as the model's residual dict
        residual = {next((d for d in kb.decided if _key(d) == k), k): m
                    for k, m in built.items()}
    try:
        return GreyBox(kb, networks, semantics=payload["semantics"],
                       inference=payload.get("inference", "exact"),
                       samples=payload.get("samples", SAMPLES),
                       residual=residual, temperature=payload["temperature"],
                       # files written before the switch: every network read its table
                       # inputs standardised, and keeps doing so
                       scale_inputs=list(payload.get("scale_inputs", kb.networks)))
    except GreyboxError as err:
        raise CheckpointError(f"{path}: cannot rebuild the model: {err}") from None


def _upgraded(model: GreyBox, state: Mapping, own: Mapping) -> dict:
    """The file's state in this version's layout: statistics added after a file was
    written (the training range and precision of the inputs) keep their defaults (an
    older file loads as "range not known"); one ``~`` threshold per copy, before the
    copies shared one, becomes the shared one."""
    state = dict(state)
    for k in _LATER_BUFFERS:
        if k in own and k not in state:
            state[k] = own[k]
    return RuleIndex(model.kb).upgrade_state(state)


def _check_state(path, state: Mapping, own: Mapping, *, given_networks: bool) -> None:
    """CheckpointError unless ``state`` names exactly the model's tensors (``own``), in
    their shapes, in dtypes that convert without losing part of each value."""
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
