"""Saving a grey-box model: rule text, header fields and a state dict, with a digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from greybox import rules as gr

from ._architecture import architecture
from ._atomic import write_atomic
from ._names import _key

__all__ = ["FORMAT", "READS", "VERSION", "save"]

FORMAT = "greybox-model"
VERSION = 2
#: versions this greybox reads: 1 has no architecture descriptions (networks must be given)
READS = (1, 2)

_META = ("format", "version", "rules", "filename", "semantics", "temperature", "networks",
         "residual")
#: header fields added later: covered by the digest when the file has them (an older
#: file's digest, computed without them, still matches)
_LATER_META = ("architectures", "scale_inputs", "inference", "samples")


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
    path = Path(path)
    residual = model.residual if model.residual is not None else {}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "rules": gr.to_text(model.kb),
        "filename": model.kb.filename,
        "semantics": model.semantics,
        "temperature": model.temperature,
        "inference": model.inference,
        "samples": model.samples,
        "networks": sorted(model.kb.networks),
        "residual": sorted(model.residual.keys()) if model.residual is not None else [],
        # the networks reading standardised table inputs (a file without this field was
        # written when every network did, and loads so)
        "scale_inputs": list(model.scaled_networks),
        "architectures": {
            "networks": {n: architecture(model.networks[_key(n)])
                         for n in sorted(model.kb.networks)},
            "residual": {k: architecture(residual[k]) for k in sorted(residual.keys())},
        },
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload["sha256"] = _digest(payload)
    write_atomic(path, lambda f: torch.save(payload, f))
