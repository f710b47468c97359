"""Flax models (linen and NNX) as feature functions: the points one can project from, and a function for one.

A *point* is a value the model computes, named by its path: every submodule's output (``Conv_0``,
``block1/conv2``: linen's ``capture_intermediates``, NNX's ``nnx.capture(..., method_outputs=...)``) and every value
the model sows (``self.sow("intermediates", "relu1", y)`` in linen, ``self.sow(nnx.Intermediate, "relu1", y)`` in
NNX). A submodule called twice gives ``name`` and ``name#1``. Note that a ``Conv`` submodule's output is the
convolution *before* the ReLU that usually follows it; to project from the rectified map, sow it or wrap conv and
ReLU in a submodule.

`points(model, variables, x)` lists them with their shapes; `features(model, name, variables)` returns
``(fn, variables)`` with ``fn(variables, images)`` the point's value, a `zfjax.network.Features`: the variables
stay traced arguments (one compiled scan or projection serves every checkpoint). `network` wraps a model as a
`zfjax.network.Network` for the analyses and experiment scripts.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from zfjax import network as zfjax_network

Array = jax.Array
_COLLECTION = "intermediates"


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{path: value} of an intermediates dict: ``__call__`` entries name their module, sown entries their own name;
    the entries of a value's tuple (one per call) get ``#1``, ``#2``, ... after the first."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = prefix if key == "__call__" else "/".join(p for p in (prefix, str(key)) if p)
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        elif isinstance(value, (tuple, list)) and path:
            for i, v in enumerate(value):
                out[path if i == 0 else f"{path}#{i}"] = v
    return out


def _is_nnx(model) -> bool:
    from flax import nnx
    return isinstance(model, nnx.Module)


def _linen_fn(model, method, kwargs) -> Callable[[Any, Array], dict]:
    def all_points(variables, x):
        variables = {k: v for k, v in variables.items() if k != _COLLECTION}
        _, state = model.apply(variables, x, method=method, capture_intermediates=True, mutable=[_COLLECTION],
                               **kwargs)
        return _flatten(state.get(_COLLECTION, {}))
    return all_points


def _nnx_fn(model, kwargs) -> tuple[Callable[[Any, Array], dict], Any]:
    from flax import nnx
    graphdef, state = nnx.split(model)

    def all_points(state, x):
        _, inter = nnx.capture(lambda m, x: m(x, **kwargs), nnx.Intermediate,
                               method_outputs=nnx.Intermediate)(nnx.merge(graphdef, state), x)
        return _flatten(inter.to_pure_dict())
    return all_points, state


def _all_points(model, variables, method, kwargs) -> tuple[Callable[[Any, Array], dict], Any]:
    if _is_nnx(model):
        return _nnx_fn(model, kwargs)
    if variables is None:
        raise ValueError("a flax.linen module needs its variables (from model.init)")
    return _linen_fn(model, method, kwargs), variables


def points(model, variables=None, x=None, *, method=None, **kwargs) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every point of `model` on input `x` (an array or a ``jax.ShapeDtypeStruct``), in the order
    Flax records them. `variables`: a linen module's (an NNX module carries its own). `kwargs` go to the model
    (e.g. ``train=False``)."""
    fn, variables = _all_points(model, variables, method, kwargs)
    shapes = jax.eval_shape(fn, variables, x)
    return {name: tuple(s.shape) for name, s in shapes.items()}


def features(model, name: str, variables=None, *, x=None, method=None, **kwargs) -> tuple[Callable, Any]:
    """``(fn, variables)``: ``fn(variables, images)`` is the point `name` of `model` (see `points`).

    With `x` (an example input or ``jax.ShapeDtypeStruct``) the name is checked at once: ValueError listing the
    valid names, or naming a point that is not an (N, h, w, c) map.
    """
    every, variables = _all_points(model, variables, method, kwargs)
    if x is not None:
        shapes = points(model, variables if not _is_nnx(model) else None, x, method=method, **kwargs)
        if name not in shapes:
            raise ValueError(f"the model has no point {name!r}; its points: {_listing(shapes)}")
        if len(shapes[name]) != 4:
            raise ValueError(f"point {name!r} has shape {shapes[name]}, not an (N, h, w, c) feature map; maps: "
                             f"{_listing({k: s for k, s in shapes.items() if len(s) == 4})}")

    def fn(variables, images):
        found = every(variables, images)
        if name not in found:
            raise ValueError(f"the model has no point {name!r}; its points: {sorted(found)}")
        return found[name]
    return fn, variables


def _listing(shapes: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {v}" for k, v in shapes.items())


def network(model, variables=None, *, input_shape: Sequence[int], name: str = "model",
            layers: Sequence[str] | None = None, preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
            display: Callable[[np.ndarray], np.ndarray] | None = None, class_names: Sequence[str] = (),
            method=None, **kwargs) -> zfjax_network.Network:
    """`model` as a `zfjax.network.Network`: its output as logits, `layers` (default: every (N, h, w, c) point)
    as feature maps, every (N, d) point as a vector (a hidden dense layer). `preprocess` maps pixels in [0, 1] to
    inputs (default: identity)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
    every, variables = _all_points(model, variables, method, kwargs)
    shapes = jax.eval_shape(every, variables, x)
    maps = [k for k, s in shapes.items() if len(s.shape) == 4]
    for layer in layers or ():
        if layer not in maps:
            raise ValueError(f"the model has no feature map {layer!r}; its maps: {maps}")
    def point(layer):
        return features(model, layer, None if _is_nnx(model) else variables, method=method, **kwargs)[0]

    vectors = {k: point(k) for k, s in shapes.items() if len(s.shape) == 2}
    return zfjax_network.Network(name, _apply(model, method, kwargs), variables,
                                 {layer: point(layer) for layer in (layers or maps)}, tuple(input_shape),
                                 preprocess or _identity, tuple(class_names), display, vectors=vectors)


def _apply(model, method, kwargs) -> Callable[[Any, Array], Array]:
    if not _is_nnx(model):
        def apply(variables, x):
            variables = {k: v for k, v in variables.items() if k != _COLLECTION}
            return model.apply(variables, x, method=method, **kwargs)
        return apply
    from flax import nnx
    graphdef, _ = nnx.split(model)
    return lambda state, x: nnx.merge(graphdef, state)(x, **kwargs)


def _identity(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(pixels, np.float32)


__all__ = ["points", "features", "network"]
