"""Saving and loading grey-box models: rule text plus a state dict, read as data only."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import CheckpointError, GreyboxError

__all__ = ["load", "save", "write_atomic"]

FORMAT = "greybox-model"
VERSION = 1


def write_atomic(path, write, *, binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk and
    rename it into place: readers see the old file or the new one, never half of one."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                       {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(model, path) -> None:
    """Write ``model`` to ``path``: its rule text, semantics, temperature, the names of its
    networks and residuals, and its state dict. The file is written next to ``path`` and
    renamed into place, so a crash never leaves half a file behind."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "rules": gr.to_text(model.kb),
        "filename": model.kb.filename,
        "semantics": model.semantics,
        "temperature": model.temperature,
        "networks": sorted(model.kb.networks),
        "residual": sorted(model.residual.keys()) if model.residual is not None else [],
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    write_atomic(path, lambda f: torch.save(payload, f))


def _read(path, map_location):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
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
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: model format version {payload.get('version')!r}; this "
                              f"greybox reads version {VERSION}")
    for key in ("rules", "semantics", "temperature", "networks", "residual", "state"):
        if key not in payload:
            raise CheckpointError(f"{path}: model file lacks {key!r}")
    return payload


def load(path, *, networks: Mapping[str, nn.Module] | None = None,
         residual: nn.Module | Mapping[str, nn.Module] | None = None,
         map_location="cpu"):
    """Load a model written by :meth:`GreyBox.save`.

    Parameters
    ----------
    path : str or Path
    networks, residual
        The same modules (architectures) the model was built with; their weights come
        from the file.
    map_location
        Where tensors go (default CPU): a model saved on a GPU loads on a CPU-only machine.

    Raises
    ------
    CheckpointError
        The file is missing, corrupted, foreign, from another version, or does not match
        the networks given.

    Examples
    --------
    >>> import tempfile, os, greybox as gb
    >>> model = gb.GreyBox("input x: real  output y: bool  rule r: x > ~1 -> y",
    ...                    semantics="product")
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> model.save(path)
    >>> gb.load(path).to_kb() == model.to_kb()
    True
    """
    from ._model import GreyBox

    payload = _read(path, map_location)
    try:
        kb = gr.parse(payload["rules"], filename=payload.get("filename"))
    except GreyboxError as err:
        raise CheckpointError(f"{path}: the rules stored in the file do not parse: {err}") \
            from None
    given = sorted(networks or {})
    if given != list(payload["networks"]):
        raise CheckpointError(f"{path}: the model uses networks {payload['networks']}; "
                              f"networks= gave {given}")
    res_names = payload["residual"]
    if res_names and residual is None:
        raise CheckpointError(f"{path}: the model has a residual network for "
                              f"{', '.join(res_names)}; pass residual=")
    model = GreyBox(kb, networks, semantics=payload["semantics"],
                    residual=residual, temperature=payload["temperature"])
    if isinstance(map_location, (str, torch.device)):
        try:
            model.to(map_location)
        except (RuntimeError, TypeError, AssertionError) as err:
            raise CheckpointError(f"cannot move the model to {map_location!r}: {err}") from None
    state = payload["state"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the state in the file is not a mapping")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameters do not match the networks given (missing: "
                              f"{missing[:5]}, unexpected: {unexpected[:5]})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{path}: parameter {k!r} has shape {list(state[k].shape)} in "
                              f"the file but {list(own[k].shape)} in the model")
    model.load_state_dict(state)
    return model
