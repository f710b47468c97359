"""`Network`: what the analyses and the experiment scripts need to know of a model, built-in or the user's own.

A `Network` is a small description around pure functions of ``(variables, images)``: ``apply`` gives logits, each
entry of ``layers`` a feature map (N, h, w, c). The variables are passed to those functions as traced arguments,
so one compiled scan or projection serves every checkpoint of a model. Images enter as float32 pixels in [0, 1]
(N, H, W, C) at ``input_shape``; ``preprocess`` turns them into network inputs, ``display`` turns network inputs
back into pixels for figures.

The experiments take ``--config.model=package.module:function``: ``function()`` (or ``function(arg)`` for
``package.module:function:arg``) returns a `Network`. `zfjax.network.models.network` describes a built-in net, and
`zfjax.flax_points` builds the ``layers`` of a Flax model from its submodules' names.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from zfjax import deconv
from zfjax.network import models

Array = jax.Array
Features = Callable[[Any, Array], Array]
"""``(variables, images) -> (N, h, w, c)``: one layer's feature map."""


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A model as the analyses see it (module docstring).

    - `apply`: ``(variables, inputs) -> logits (N, classes)``.
    - `layers`: layer name -> `Features`, in forward order (the layers figures show and projections start from).
    - `preprocess`: pixels in [0, 1] (N, H, W, C) -> network inputs; `display`: the inverse, for figures (None:
      each image stretched to its own range).
    - `project`: optional ``(variables, layer, inputs, channel, position, rule) -> (N, H, W, C)`` that replaces the
      generic `zfjax.deconv.projection.project_fn` (a built-in net's fast path); same semantics.
    - `vectors`: other named features, ``(variables, inputs) -> (N, d)`` (a hidden fc layer: the paper's layer 7),
      for the invariance and correspondence measures.
    - `snapshots`: optional ``() -> [(epoch, variables), ...]``, oldest first: the training run's snapshots for the
      feature evolution (Fig. 4).
    """
    name: str
    apply: Callable[[Any, Array], Array]
    variables: Any
    layers: Mapping[str, Features]
    input_shape: tuple[int, int, int]
    preprocess: Callable[[np.ndarray], np.ndarray]
    class_names: Sequence[str] = ()
    display: Callable[[np.ndarray], np.ndarray] | None = None
    project: Callable | None = None
    vectors: Mapping[str, Features] = dataclasses.field(default_factory=dict)
    snapshots: Callable[[], Sequence[tuple[int, Any]]] | None = None

    def features(self, layer: str) -> Features:
        """The feature function of `layer`, a map or a vector (ValueError listing the layers there are)."""
        if layer in self.layers:
            return self.layers[layer]
        if layer in self.vectors:
            return self.vectors[layer]
        raise ValueError(f"{self.name} has no layer {layer!r}; its layers: {list(self.layers) + list(self.vectors)}")

    def feature_map(self, layer: str) -> Features:
        """The feature function of the map `layer` (ValueError naming the maps there are)."""
        if layer not in self.layers:
            raise ValueError(f"{self.name} has no layer {layer!r} with a feature map to project from; its maps: "
                             f"{list(self.layers)}")
        return self.layers[layer]

    def num_classes(self) -> int:
        """The number of classes of the logits (from their shape; nothing is computed)."""
        x = jax.ShapeDtypeStruct((1, *self.input_shape), np.float32)
        return int(jax.eval_shape(self.apply, self.variables, x).shape[-1])

    def to_display(self, inputs: np.ndarray) -> np.ndarray:
        """Network inputs -> pixels in [0, 1] for figures."""
        if self.display is not None:
            return np.clip(np.asarray(self.display(np.asarray(inputs))), 0.0, 1.0)
        x = np.asarray(inputs, np.float32)
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        span = x.max(axis=(1, 2, 3), keepdims=True) - lo
        return (x - lo) / np.where(span > 0, span, 1.0)

    def class_name(self, k: int) -> str:
        return self.class_names[k] if k < len(self.class_names) else f"class {k}"


@dataclasses.dataclass(frozen=True)
class ArchLayer:
    """`Features` of a built-in net's layer (hashable by value: equal nets share compiled functions)."""
    arch: models.Arch
    layer: str

    def __call__(self, params: models.Params, x: Array) -> Array:
        return models.apply(self.arch, params, x, upto=self.layer).acts[self.layer]


@dataclasses.dataclass(frozen=True)
class ArchLogits:
    """A built-in net's logits (test mode)."""
    arch: models.Arch

    def __call__(self, params: models.Params, x: Array) -> Array:
        return models.apply(self.arch, params, x).logits


@dataclasses.dataclass(frozen=True)
class ArchProjection:
    """`Network.project` of a built-in net: `deconv.project` (its cropped fast path; LCN skipped on the way back)."""
    arch: models.Arch

    def __call__(self, params, layer, x, channel, position, rule):
        return deconv.project(self.arch, params, x, layer, channel, position=position, rule=rule)


@dataclasses.dataclass(frozen=True)
class _Normalize:
    """Pixels in [0, 1] -> ``(255 * pixels - mean) * scale`` (the built-in nets' input space) and back; `scale` a
    number or one per channel."""
    mean: Any
    scale: Any

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        scale = np.asarray(self.scale, np.float32)
        return ((np.asarray(pixels, np.float32) * 255.0 - self._mean(pixels)) * scale).astype(np.float32)

    def inverse(self, inputs: np.ndarray) -> np.ndarray:
        return (np.asarray(inputs, np.float32) / np.asarray(self.scale, np.float32) + self._mean(inputs)) / 255.0

    def _mean(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32)
        if mean.ndim == 3:  # a per-pixel mean (any H, W >= the input's): its center crop
            h, w = np.shape(x)[-3:-1]
            top, left = (mean.shape[0] - h) // 2, (mean.shape[1] - w) // 2
            mean = mean[top:top + h, left:left + w]
        return mean


def from_arch(arch: models.Arch, params: models.Params, mean, scale, *, class_names: Sequence[str] = (),
              name: str | None = None) -> Network:
    """A built-in net as a `Network`: every conv and pool map a layer, the hidden fc layers vectors, inputs
    ``(pixel - mean) * scale`` with pixels in 0..255 (`mean` one value per channel or a per-pixel map, `scale` a
    number or one per channel), its own fast projection."""
    normalize = _Normalize(mean, scale)
    return Network(name or arch.name, ArchLogits(arch), params,
                   {n: ArchLayer(arch, n) for n in deconv.projectable_layers(arch)}, tuple(arch.input_shape),
                   normalize, tuple(class_names), normalize.inverse, ArchProjection(arch),
                   {f.name: ArchLayer(arch, f.name) for f in arch.fcs})


def load(spec: str) -> Network:
    """The `Network` returned by ``package.module:function`` (or ``package.module:function:arg``)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise ValueError(f"model {spec!r} must be 'package.module:function' or 'package.module:function:arg'")
    module_name, function_name = parts[:2]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model {spec!r}: cannot import {module_name!r} ({e})") from e
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"model {spec!r}: {module_name} has no function {function_name!r}")
    net = function(*parts[2:])
    if not isinstance(net, Network):
        raise ValueError(f"model {spec!r}: {function_name}() returned {type(net).__name__}, not a zfjax Network")
    check(net)
    return net


def check(net: Network) -> None:
    """ValueError when `net`'s layers do not map its input to (N, h, w, c) maps or its logits are not (N, k)."""
    if len(net.input_shape) != 3:
        raise ValueError(f"{net.name}: input_shape must be (H, W, C), got {net.input_shape}")
    if not net.layers:
        raise ValueError(f"{net.name}: no layers to show")
    x = jax.ShapeDtypeStruct((1, *net.input_shape), np.float32)
    for name, fn in net.layers.items():
        shape = jax.eval_shape(fn, net.variables, x).shape
        if len(shape) != 4:
            raise ValueError(f"{net.name}: layer {name!r} gives shape {shape}, not an (N, h, w, c) feature map")
    logits = jax.eval_shape(net.apply, net.variables, x).shape
    if len(logits) != 2:
        raise ValueError(f"{net.name}: apply gives shape {logits}, not (N, classes) logits")


__all__ = ["Network", "Features", "from_arch", "load", "check", "ArchLayer", "ArchLogits", "ArchProjection"]
