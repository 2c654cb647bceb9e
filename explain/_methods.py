"""Captum attribution methods by name, behind one calling convention.

Each entry adapts one Captum method to ``attribute(forward, inputs, *, target, baselines,
extra) -> (attributions, delta or None)``; the differences between Captum's signatures
(which take baselines, which give a convergence delta, which need a module) stay here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)

from greybox.errors import ModelError

__all__ = ["METHODS", "Method", "attribute"]


@dataclass(frozen=True)
class Method:
    """One attribution method: its Captum class and how to call it."""

    name: str
    captum: type
    #: whether Captum reports a convergence (completeness) delta
    has_delta: bool
    #: whether it needs an ``nn.Module`` rather than a function
    needs_module: bool = False
    #: whether it compares with a baseline
    uses_baseline: bool = True
    options: tuple = ()

    def __call__(self, forward: Callable, inputs: torch.Tensor, *, target=None,
                 baselines: torch.Tensor | None = None, extra: tuple = (),
                 module: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.needs_module:
            if module is None:
                raise ModelError(f"attribution method {self.name!r} needs an nn.Module; use "
                                 "it for network inputs, or choose another method")
            algo = self.captum(module)
        else:
            algo = self.captum(forward)
        if inputs.is_floating_point():  # gradient methods need it; perturbation ones ignore it
            inputs = inputs.detach().clone().requires_grad_(True)
        kwargs = dict(self.options)
        kwargs["target"] = target
        if extra:
            kwargs["additional_forward_args"] = extra
        if self.uses_baseline:
            if baselines is None:
                baselines = torch.zeros_like(inputs)
            if self.captum is GradientShap:
                baselines = torch.cat([baselines[:1], torch.zeros_like(inputs[:1])])
            kwargs["baselines"] = baselines
        if self.captum is Occlusion:
            kwargs["sliding_window_shapes"] = (1,) * (inputs.dim() - 1)
        if self.has_delta:
            attr, delta = algo.attribute(inputs, return_convergence_delta=True, **kwargs)
            return attr, delta
        return algo.attribute(inputs, **kwargs), None


#: Attribution methods by name (``explain(..., method=NAME)``).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("integrated_gradients", IntegratedGradients, True, options=(("n_steps", 50),)),
    Method("saliency", Saliency, False, uses_baseline=False, options=(("abs", False),)),
    Method("input_x_gradient", InputXGradient, False, uses_baseline=False),
    Method("deeplift", DeepLift, True, needs_module=True),
    Method("gradient_shap", GradientShap, True, options=(("n_samples", 20),)),
    Method("occlusion", Occlusion, False),
    Method("feature_ablation", FeatureAblation, False),
    Method("shapley_value_sampling", ShapleyValueSampling, False,
           options=(("n_samples", 25),)),
)}


def attribute(name: str, forward: Callable, inputs: torch.Tensor, **kwargs):
    """Run the method called ``name`` (see :data:`METHODS`)."""
    method = METHODS.get(name)
    if method is None:
        raise ModelError(f"unknown attribution method {name!r}; choose one of "
                         f"{', '.join(METHODS)}")
    return method(forward, inputs, **kwargs)
