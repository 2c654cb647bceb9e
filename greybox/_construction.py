"""What a grey-box model is built from, checked: its knowledge base, options, networks,
the networks that read standardised inputs, residuals; and the statistics of a model
pickled before they were a child module."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from greybox import rules as gr
from greybox.errors import ModelError, listed

from ._names import _key
from ._statistics import STATISTICS, InputStatistics
from .semantics import REGISTRY

__all__ = ["adopt_statistics", "as_kb", "check_options", "network_modules",
           "residual_modules", "scaled_network_names"]


def as_kb(kb) -> gr.KnowledgeBase:
    """A knowledge base from a parsed one, rule text or a ``.rules`` path."""
    if isinstance(kb, Path) or (isinstance(kb, str) and kb.endswith(".rules")
                                and "\n" not in kb):
        kb = gr.load(kb)
    elif isinstance(kb, str):
        kb = gr.parse(kb)
    if not isinstance(kb, gr.KnowledgeBase):
        raise ModelError(f"kb must be a KnowledgeBase, rule text or a .rules path, got "
                         f"{type(kb).__name__}")
    return kb


def check_options(semantics: str, temperature: float) -> None:
    if semantics not in REGISTRY or semantics == "crisp":
        raise ModelError(f"unknown semantics {semantics!r}; expected one of "
                         "'probabilistic', 'product', 'godel', 'lukasiewicz' (crisp "
                         "evaluation is model.crisp())")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ModelError(f"temperature must be a positive number, got {temperature!r}")


def network_modules(kb: gr.KnowledgeBase, networks) -> nn.ModuleDict:
    """One module per network the rules name, neither missing nor extra."""
    networks = dict(networks or {})
    missing = [n for n in kb.networks if n not in networks]
    if missing:
        raise ModelError(f"no module given for network {missing[0]!r} (used by "
                         f"{listed(kb.networks[missing[0]])}); pass networks="
                         f"{{{missing[0]!r}: module}}")
    extra = [n for n in networks if n not in kb.networks]
    if extra:
        raise ModelError(f"network {extra[0]!r} is not used by the rules (networks: "
                         f"{listed(kb.networks) or 'none'})")
    for n, m in networks.items():
        if not isinstance(m, nn.Module):
            raise ModelError(f"network {n!r} must be a torch.nn.Module, got {type(m).__name__}")
    return nn.ModuleDict({_key(n): m for n, m in networks.items()})


def scaled_network_names(kb: gr.KnowledgeBase, scale_inputs) -> tuple[str, ...]:
    """The networks ``scale_inputs`` names (True: all, False: none), checked."""
    if isinstance(scale_inputs, bool):
        return tuple(sorted(kb.networks)) if scale_inputs else ()
    if isinstance(scale_inputs, str) or not isinstance(scale_inputs, Iterable):
        raise ModelError(f"scale_inputs must be True, False or a list of network names, "
                         f"got {scale_inputs!r}")
    names = list(scale_inputs)
    unknown = [n for n in names if n not in kb.networks]
    if unknown:
        raise ModelError(f"scale_inputs names {unknown[0]!r}, which is not a network of the "
                         f"rules (networks: {', '.join(kb.networks) or 'none'})")
    return tuple(sorted(set(names)))


def residual_modules(kb: gr.KnowledgeBase, residual) -> nn.ModuleDict | None:
    """The residual networks by decided output (a single module: the only one)."""
    if residual is None:
        return None
    if isinstance(residual, nn.Module):
        if len(kb.decided) != 1:
            raise ModelError("a single residual network needs exactly one decided "
                             f"output; this model decides {listed(kb.decided)}: "
                             "pass residual={output: module}")
        residual = {kb.decided[0]: residual}
    for name, m in residual.items():
        if name not in kb.decided:
            raise ModelError(f"residual given for {name!r}, which is not decided by "
                             f"rules (decided: {listed(kb.decided) or 'none'})")
        if not isinstance(m, nn.Module):
            raise ModelError(f"residual for {name!r} must be an nn.Module")
    return nn.ModuleDict({_key(k): m for k, m in residual.items()})


def adopt_statistics(kb: gr.KnowledgeBase, buffers: dict) -> InputStatistics:
    """The statistics of a model pickled when their buffers were the model's own
    (``buffers``, emptied of them)."""
    stats = InputStatistics(kb)
    for name in STATISTICS:
        if name in buffers:
            setattr(stats, name, buffers.pop(name))
    return stats
