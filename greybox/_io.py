"""Saving and loading grey-box models: rule text plus a state dict, read as data only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import CheckpointError, GreyboxError, SaveError

__all__ = ["load", "save", "write_atomic"]

FORMAT = "greybox-model"
VERSION = 1

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


_META = ("format", "version", "rules", "filename", "semantics", "temperature", "networks",
         "residual")


def _digest(payload: Mapping) -> str:
    """SHA-256 of everything a model is rebuilt from: the header fields and, per state
    entry in name order, its name, dtype, shape and bytes."""
    h = hashlib.sha256()
    meta = {k: payload.get(k) for k in _META}
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode("utf-8"))
    state = payload["state"]
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(json.dumps([name, str(t.dtype), list(state[name].shape)]).encode("utf-8"))
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(model, path) -> None:
    """Write ``model`` to ``path``: its rule text, semantics, temperature, the names of its
    networks and residuals, its state dict and a SHA-256 digest of them all. The file is
    written next to ``path`` and renamed into place, so a crash never leaves half a file
    behind."""
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
    payload["sha256"] = _digest(payload)
    write_atomic(path, lambda f: torch.save(payload, f))


def _check_archive(path: Path) -> None:
    """Every member of the zip archive torch writes matches its CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return  # not a zip archive at all: torch.load says what it is
    except Exception as err:  # zlib, struct or OS errors of a damaged archive  # noqa: BLE001
        raise CheckpointError(f"{path}: corrupted archive ({type(err).__name__}: {err})") \
            from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupted file: {bad!r} fails its CRC-32 check")


def _read(path, map_location):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
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
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: model format version {payload.get('version')!r}; this "
                              f"greybox reads version {VERSION}")
    for key in ("rules", "semantics", "temperature", "networks", "residual", "state"):
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
    if "sha256" in payload:  # files written before the digest existed have none
        try:
            digest = _digest(payload)
        except (RuntimeError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: the state cannot be read ({err})") from None
        if digest != payload["sha256"]:
            raise CheckpointError(f"{path}: corrupted file: its contents do not match the "
                                  "SHA-256 digest stored when it was saved")
    for k, v in state.items():
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
        The same modules (architectures) the model was built with; their weights come
        from the file.
    map_location
        Where tensors go (default CPU): a model saved on a GPU loads on a CPU-only machine.

    Raises
    ------
    CheckpointError
        The file is missing, corrupted (a CRC-32 or the SHA-256 digest stored by
        :func:`save` does not match), foreign, from another version, holds NaN or infinite
        numbers, or does not match the networks given.

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
    try:
        model = GreyBox(kb, networks, semantics=payload["semantics"],
                        residual=residual, temperature=payload["temperature"])
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
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: the state does not fit the model ({first})") from None
    return model
