"""ZFNet, AlexNet and small variants as data (`Arch`) plus pure functions (`init`, `apply`).

An `Arch` is a frozen, hashable description: pass it as a static argument to `jax.jit`. Parameters are a nested
dict ``{"conv1": {"w": HWIO, "b": (O,)}, ..., "fc6": {"w": (in, out), "b": (out,)}, ...}``; the input of the first
fc layer is the last pooled map flattened in NHWC order (``x.reshape(n, -1)``).

Layer names follow the paper (``conv1``..``conv5``, ``pool1``/``pool2``/``pool5``, ``fc6``, ``fc7``, ``fc8``) and
survive ablations: removing conv3 and conv4 leaves ``conv1, conv2, conv5``. A pool (and its LCN) belongs to the conv
layer with the same number and goes when that conv is removed.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zfjax.network import layers

Array = jax.Array
Params = dict[str, dict[str, Array]]


@dataclasses.dataclass(frozen=True)
class Conv:
    """One conv layer (ReLU always follows), optionally followed by a max pool and then LCN."""
    name: str
    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: bool = False
    lcn: bool = False

    @property
    def pool_name(self) -> str:
        return "pool" + self.name[len("conv"):]

    @property
    def output_name(self) -> str:
        """The map this block hands to the next one: its pool (pooled, normalized) if it has one, else the conv's."""
        return self.pool_name if self.pool else self.name


@dataclasses.dataclass(frozen=True)
class Fc:
    """One hidden fully connected layer: ReLU, then dropout while training."""
    name: str
    features: int
    dropout: float = 0.5


@dataclasses.dataclass(frozen=True)
class Arch:
    """A network: conv stack, hidden fc layers, a `num_classes`-way classifier called ``fc8``, and its knobs.

    `lcn` switches every LCN of the net on or off (the per-layer placement is in `convs`). `init` is ``"paper"``
    (weights N(0, init_scale^2), biases 0, as in the paper) or ``"fan_in"`` (He normal, std sqrt(2 / fan_in)).
    """
    name: str
    convs: tuple[Conv, ...]
    fcs: tuple[Fc, ...]
    num_classes: int = 1000
    input_shape: tuple[int, int, int] = (224, 224, 3)
    lcn: bool = True
    lcn_size: int = 5
    lcn_k: float = 2.0
    lcn_alpha: float = 1e-4
    lcn_beta: float = 0.75
    pool_window: int = 3
    pool_stride: int = 2
    pool_ceil: bool = True
    init: str = "paper"
    init_scale: float = 0.01

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Every activation name `apply` reports, in forward order."""
        names: list[str] = []
        for c in self.convs:
            names.append(c.name)
            if c.pool:
                names.append(c.pool_name)
        return tuple(names) + tuple(f.name for f in self.fcs) + ("fc8",)

    @property
    def lcn_params(self) -> tuple[int, float, float, float]:
        """`layers.lcn`'s (size, k, alpha, beta) for this net."""
        return self.lcn_size, self.lcn_k, self.lcn_alpha, self.lcn_beta

    @property
    def pool_names(self) -> tuple[str, ...]:
        return tuple(c.pool_name for c in self.convs if c.pool)

    @property
    def paper_layers(self) -> tuple[str, ...]:
        """What the paper calls "layer 1, 2, ...": each conv block's output map, then the hidden fc layers
        (ZFNet: pool1, pool2, conv3, conv4, pool5, fc6, fc7)."""
        return tuple(c.output_name for c in self.convs) + tuple(f.name for f in self.fcs)

    def paper_layer(self, k: int) -> str:
        """The activation the paper calls "layer k" (1-based; ZFNet: layer 5 = pool5, layer 7 = fc7)."""
        if not 1 <= k <= len(self.paper_layers):
            raise ValueError(f"{self.name} has layers 1..{len(self.paper_layers)}, not {k}")
        return self.paper_layers[k - 1]

    def conv(self, name: str) -> Conv:
        """The conv layer called `name` (ValueError naming the layers there are)."""
        for c in self.convs:
            if c.name == name:
                return c
        raise ValueError(f"{self.name} has no conv layer {name!r}; conv layers: {[c.name for c in self.convs]}")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-image output shape of every layer (H, W, C for maps, (units,) for fc), computed without arrays."""
        h, w, ch = self.input_shape
        out: dict[str, tuple[int, ...]] = {}
        for c in self.convs:
            h, w = (layers.conv_output_size(s, c.kernel, c.stride, c.padding) for s in (h, w))
            ch = c.features
            if h < 1 or w < 1:
                raise ValueError(f"{self.name}: input {self.input_shape} is too small: {c.name} would be {h}x{w}")
            out[c.name] = (h, w, ch)
            if c.pool:
                if min(h, w) < self.pool_window:
                    raise ValueError(f"{self.name}: input {self.input_shape} is too small: {c.name} is {h}x{w}, "
                                     f"smaller than the {self.pool_window}x{self.pool_window} pool")
                h, w = (layers.pool_output_size(s, self.pool_window, self.pool_stride, self.pool_ceil) for s in (h, w))
                out[c.pool_name] = (h, w, ch)
        for f in self.fcs:
            out[f.name] = (f.features,)
        out["fc8"] = (self.num_classes,)
        return out


class Forward(NamedTuple):
    """What `apply` returns.

    - `logits`: (N, num_classes), or None when `upto` stopped before ``fc8``.
    - `acts`: layer name -> activation. ``convK`` post-ReLU, pre-pool; ``poolK`` pooled then contrast-normalized
      where the arch has LCN; hidden ``fcK`` post-ReLU, pre-dropout; ``fc8`` the logits.
    - `switches`: pool name -> int32 (N, Ho, Wo, C): for each pooled unit, the flat index ``h * W + w`` of its
      maximum in the pre-pool map (the ``convK`` map of width W). See `unravel_switches`.
    """
    logits: Array | None
    acts: dict[str, Array]
    switches: dict[str, Array]


def _zf_convs(conv1: tuple[int, int, int], conv2: tuple[int, int], widths: Sequence[int]) -> tuple[Conv, ...]:
    """The five-conv layout shared by ZFNet and AlexNet (pools after 1, 2, 5; LCN after pools 1, 2).

    `conv1` is (kernel, stride, padding); `conv2` is (stride, padding) of its 5x5 filters.
    """
    w1, w2, w3, w4, w5 = widths
    return (
        Conv("conv1", w1, *conv1, pool=True, lcn=True),
        Conv("conv2", w2, 5, *conv2, pool=True, lcn=True),
        Conv("conv3", w3, 3, 1, 1),
        Conv("conv4", w4, 3, 1, 1),
        Conv("conv5", w5, 3, 1, 1, pool=True),
    )


_FC_4096 = (Fc("fc6", 4096), Fc("fc7", 4096))

ARCHS: dict[str, Arch] = {
    # Fig. 3 of the paper: conv1 7x7/2 pad 1, conv2 5x5/2 no pad.
    "zfnet": Arch("zfnet", _zf_convs((7, 2, 1), (2, 0), (96, 256, 384, 384, 256)), _FC_4096),
    # Table 2's best single net: layers 3, 4, 5 with 512, 1024, 512 maps.
    "zfnet_b": Arch("zfnet_b", _zf_convs((7, 2, 1), (2, 0), (96, 256, 512, 1024, 512)), _FC_4096),
    # Krizhevsky's single-tower net: conv1 11x11/4 (pad 2 gives 55x55 from 224), conv2 5x5/1 pad 2.
    "alexnet": Arch("alexnet", _zf_convs((11, 4, 2), (1, 2), (96, 256, 384, 384, 256)), _FC_4096),
    # A small ZF-style net for 28x28 grey images (Fashion-MNIST): the same layer kinds, ~10M MACs per image.
    "small": Arch(
        "small",
        (Conv("conv1", 32, 5, 1, 2, pool=True, lcn=True), Conv("conv2", 64, 3, 1, 1, pool=True, lcn=True),
         Conv("conv3", 96, 3, 1, 1), Conv("conv4", 96, 3, 1, 1), Conv("conv5", 64, 3, 1, 1, pool=True)),
        (Fc("fc6", 256), Fc("fc7", 256)),
        num_classes=10, input_shape=(28, 28, 1), init="fan_in"),
    # torchvision's AlexNet (64/192/384/256/256 maps, floor-mode pools, no LCN) for imported weights. Its
    # adaptive 6x6 average pool is the identity at 224x224 (pool5 is already 6x6), the only size fc6 accepts here.
    "alexnet_torchvision": Arch(
        "alexnet_torchvision", _zf_convs((11, 4, 2), (1, 2), (64, 192, 384, 256, 256)), _FC_4096,
        lcn=False, pool_ceil=False),
}

_SCALARS = ("num_classes", "input_shape", "lcn", "lcn_size", "lcn_k", "lcn_alpha", "lcn_beta", "pool_window",
            "pool_stride", "pool_ceil", "init", "init_scale")
INITS = ("paper", "fan_in")


def get(name: str, *, remove: Sequence[str] = (), **overrides: Any) -> Arch:
    """The architecture `name` (one of `ARCHS`) with plain overrides.

    - scalar fields of `Arch`: ``num_classes``, ``input_shape``, ``lcn``, ``init``, ``init_scale``, ...
    - ``remove=("conv3", "conv4", "fc6", "fc7")``: drop layers (Table 3's ablations); ``fc8`` stays.
    - a layer name with a mapping of that layer's fields: ``conv3={"features": 512}``, ``fc6={"features": 8192}``,
      ``conv1={"kernel": 11, "stride": 4, "padding": 2}`` (Table 3's resized layers, Fig. 6's first layer).

    Raises ValueError naming an unknown architecture, field or layer, or an input too small for the net.
    """
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHS)}")
    arch = ARCHS[name]
    layer_fields = {n: ov for n, ov in overrides.items() if n not in _SCALARS}
    scalars = {n: ov for n, ov in overrides.items() if n in _SCALARS}
    all_layers = {c.name for c in arch.convs} | {f.name for f in arch.fcs}
    for n, ov in layer_fields.items():
        if n not in all_layers:
            raise ValueError(f"unknown override {n!r} for {name}: use a field of Arch {list(_SCALARS)}, "
                             f"'remove', or a layer name {sorted(all_layers)} with a dict of its fields")
        if not isinstance(ov, Mapping):
            raise ValueError(f"override {n}={ov!r} must be a dict of layer fields, e.g. {{'features': 512}}")
    for n in remove:
        if n not in all_layers:
            raise ValueError(f"cannot remove {n!r} from {name}: removable layers are {sorted(all_layers)}")
    convs = tuple(_replace(c, layer_fields.get(c.name, {})) for c in arch.convs if c.name not in remove)
    fcs = tuple(_replace(f, layer_fields.get(f.name, {})) for f in arch.fcs if f.name not in remove)
    if not convs:
        raise ValueError(f"{name}: removing {list(remove)} leaves no conv layer")
    if "input_shape" in scalars:
        scalars["input_shape"] = tuple(int(s) for s in scalars["input_shape"])
        if len(scalars["input_shape"]) != 3:
            raise ValueError(f"input_shape must be (H, W, C), got {scalars['input_shape']}")
    if scalars.get("init", arch.init) not in INITS:
        raise ValueError(f"unknown init {scalars['init']!r}; choose one of {INITS}")
    out = dataclasses.replace(arch, convs=convs, fcs=fcs, **scalars)
    out.shapes()  # validates sizes
    return out


def _replace(layer, fields: Mapping[str, Any]):
    known = {f.name for f in dataclasses.fields(layer)} - {"name"}
    bad = set(fields) - known
    if bad:
        raise ValueError(f"unknown field(s) {sorted(bad)} for layer {layer.name}; fields: {sorted(known)}")
    return dataclasses.replace(layer, **fields)


def to_dict(arch: Arch) -> dict[str, Any]:
    """`arch` as plain JSON-ready data (`from_dict` inverts it): what a training run records about its network."""
    return dataclasses.asdict(arch)


def from_dict(d: Mapping[str, Any]) -> Arch:
    """The `Arch` of `to_dict`; ValueError naming an unknown or missing field (a record of another version)."""
    def build(cls, fields: Mapping[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, Mapping) or set(fields) - known:
            raise ValueError(f"not a {cls.__name__} description: {fields!r} (fields: {sorted(known)})")
        return cls(**fields)
    try:
        arch = build(Arch, {**d, "convs": (), "fcs": ()})
        arch = dataclasses.replace(arch, input_shape=tuple(int(s) for s in d["input_shape"]),
                                   convs=tuple(build(Conv, c) for c in d["convs"]),
                                   fcs=tuple(build(Fc, f) for f in d["fcs"]))
    except (KeyError, TypeError) as e:
        raise ValueError(f"not an architecture description ({type(e).__name__}: {e})") from None
    arch.shapes()  # validates sizes
    return arch


def param_shapes(arch: Arch) -> dict[str, dict[str, tuple[int, ...]]]:
    """Shape of every parameter, without allocating."""
    shapes = arch.shapes()
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    cin = arch.input_shape[2]
    for c in arch.convs:
        out[c.name] = {"w": (c.kernel, c.kernel, cin, c.features), "b": (c.features,)}
        cin = c.features
    last = arch.convs[-1]
    fan = math.prod(shapes[last.output_name])
    for f in arch.fcs + (Fc("fc8", arch.num_classes),):
        out[f.name] = {"w": (fan, f.features), "b": (f.features,)}
        fan = f.features
    return out


@functools.partial(jax.jit, static_argnums=0)
def init(arch: Arch, key: Array) -> Params:
    """Fresh parameters: weights by `arch.init` (see `Arch`), biases 0, float32 (one compiled program: op by op,
    each layer's draw compiled on its own and took seconds)."""
    shapes = param_shapes(arch)
    keys = jax.random.split(key, len(shapes))
    params: Params = {}
    for k, (name, s) in zip(keys, shapes.items()):
        w_shape = s["w"]
        fan_in = math.prod(w_shape[:-1])
        std = arch.init_scale if arch.init == "paper" else math.sqrt(2.0 / fan_in)
        params[name] = {"w": std * jax.random.normal(k, w_shape, jnp.float32), "b": jnp.zeros(s["b"], jnp.float32)}
    return params


def check_params(arch: Arch, params: Params) -> None:
    """ValueError naming the first layer whose parameters are missing or have the wrong shape for `arch`."""
    for name, s in param_shapes(arch).items():
        if name not in params:
            raise ValueError(f"params have no layer {name!r} needed by {arch.name}; they have {sorted(params)}")
        for k, shape in s.items():
            got = tuple(np.shape(params[name].get(k))) if k in params[name] else None
            if got != shape:
                raise ValueError(f"params[{name!r}][{k!r}] has shape {got}, but {arch.name} needs {shape}")
    extra = set(params) - set(param_shapes(arch))
    if extra:
        raise ValueError(f"params have layers {sorted(extra)} that {arch.name} does not")


def check_layer(arch: Arch, layer: str, names: Sequence[str] | None = None, *, problem: str = "") -> None:
    """ValueError unless `layer` is one of `names` (default: every layer of `arch`), naming the ones there are."""
    names = arch.layer_names if names is None else names
    if layer not in names:
        raise ValueError(f"{problem or f'unknown layer {layer!r}'}; {arch.name} has {list(names)}")


def _check_input(arch: Arch, x: Array, upto: str | None) -> None:
    if upto is not None:
        check_layer(arch, upto, problem=f"unknown layer upto={upto!r}")
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"input must be a float NHWC batch of rank 4, got shape {np.shape(x)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"input dtype {x.dtype} is not floating point: convert and scale images to float32 first")
    if x.shape[3] != arch.input_shape[2]:
        raise ValueError(f"input has {x.shape[3]} channels, {arch.name} expects {arch.input_shape[2]} "
                         f"(input_shape {arch.input_shape})")
    reaches_fc = upto is None or upto in {f.name for f in arch.fcs} | {"fc8"}
    if reaches_fc and tuple(x.shape[1:3]) != tuple(arch.input_shape[:2]):
        raise ValueError(f"input is {x.shape[1]}x{x.shape[2]}, but the fc layers of {arch.name} need "
                         f"{arch.input_shape[0]}x{arch.input_shape[1]}; pass upto='<conv or pool layer>' for "
                         f"other sizes")


def check_images(arch: Arch, x: Array, upto: str | None = None) -> None:
    """ValueError for a batch `apply` cannot take (rank, channels, dtype, size) or, when `x` is concrete, one
    holding NaN or Inf. For the public entry points, outside jit: traced values are not checked for NaN."""
    _check_input(arch, x, upto)
    if isinstance(x, jax.core.Tracer):
        return
    with jax.ensure_compile_time_eval():  # a concrete array closed over by the caller's jit is still checked
        finite = np.isfinite(x) if isinstance(x, np.ndarray) else jnp.isfinite(x)
        ok = bool(finite.all())
    if not ok:
        bad = np.argwhere(~np.asarray(finite))
        raise ValueError(f"input has {len(bad)} NaN or infinite values (first at index {tuple(bad[0].tolist())}): "
                         f"check how the images were loaded and normalized")


def apply(arch: Arch, params: Params, x: Array, *, train: bool = False, rng: Array | None = None,
          upto: str | None = None, ops: layers.Ops = layers.PLAIN) -> Forward:
    """Run the network on a float NHWC batch; every activation and every pool's switches come back.

    `train=True` applies dropout (needs `rng`). `upto` stops after that layer (logits then None). `ops` selects the
    backward rules for ReLU, pooling and LCN (see `zfjax.deconv`); the forward values never depend on it.
    """
    _check_input(arch, x, upto)
    if train and rng is None and any(f.dropout > 0 for f in arch.fcs):
        raise ValueError("train=True applies dropout and needs rng=jax.random.key(...)")
    acts: dict[str, Array] = {}
    switches: dict[str, Array] = {}

    def done(name: str, value: Array) -> bool:
        acts[name] = value
        return name == upto

    for c in arch.convs:
        x = conv_forward(params, c, x, c.padding, ops)
        if done(c.name, x):
            return Forward(None, acts, switches)
        if c.pool:
            in_width = x.shape[2]
            x, offset = pool_forward(arch, c.lcn, x, arch.pool_ceil, ops)
            switches[c.pool_name] = layers.switches_from_offsets(offset, in_width, arch.pool_window, arch.pool_stride)
            if done(c.pool_name, x):
                return Forward(None, acts, switches)
    for name, x in fc_forward(arch, params, x, ops=ops, rng=rng if train else None):
        if done(name, x) and name != "fc8":
            return Forward(None, acts, switches)
    return Forward(x, acts, switches)


def conv_forward(params: Params, c: Conv, x: Array, padding: int, ops: layers.Ops = layers.PLAIN) -> Array:
    """Conv layer `c` and its ReLU on `x`, zero-padded by `padding` (`c.padding` in `apply`; 0 on a pre-padded
    window)."""
    return ops.relu(layers.conv(x, params[c.name]["w"], params[c.name]["b"], c.stride, padding))


def pool_forward(arch: Arch, lcn: bool, x: Array, ceil_mode: bool,
                 ops: layers.Ops = layers.PLAIN) -> tuple[Array, Array]:
    """A block's max pool and, where the block (`lcn`) and the net have it, LCN: (output, the pool's offsets)."""
    x, offset = ops.max_pool(x, arch.pool_window, arch.pool_stride, ceil_mode)
    return (ops.lcn(x, *arch.lcn_params) if lcn and arch.lcn else x), offset


def fc_forward(arch: Arch, params: Params, x: Array, *, ops: layers.Ops = layers.PLAIN,
               rng: Array | None = None) -> Iterator[tuple[str, Array]]:
    """The fc layers on the last block's map `x` (flattened): (name, activation) of each hidden layer, then
    ("fc8", logits). With `rng`, dropout follows each hidden layer (its reported activation is before dropout)."""
    x = x.reshape(x.shape[0], -1)
    for i, f in enumerate(arch.fcs):
        x = ops.relu(layers.dense(x, params[f.name]["w"], params[f.name]["b"]))
        yield f.name, x
        if rng is not None and f.dropout > 0:
            x = layers.dropout(x, f.dropout, jax.random.fold_in(rng, i))
    yield "fc8", layers.dense(x, params["fc8"]["w"], params["fc8"]["b"])


def head(arch: Arch, params: Params, x: Array) -> Array:
    """The logits of the fc layers (test mode) on the last block's map `x`: what `apply` computes after the convs."""
    *_, (_, logits) = fc_forward(arch, params, x)
    return logits


CPU_CHUNK = 4
"""Images per step of `map_chunks` on CPU."""


def map_chunks(fn, *batches: Array, chunk: int | None = None):
    """`fn(*batches)`, computed `chunk` images at a time in a loop (the leading axis of every array in `batches`).

    On CPU (default `CPU_CHUNK`) one chunk's maps stay in cache and the loop reuses their buffers, where a whole
    batch writes fresh memory for every map: ZFNet's forward to conv5 at batch 32 0.65 -> 0.49 s on one core, 32
    images' projections 0.89 -> 0.73 s. On other backends the default is the whole batch (one call).
    """
    n = batches[0].shape[0]
    chunk = chunk or (CPU_CHUNK if jax.default_backend() == "cpu" else n)
    if n <= chunk:
        return fn(*batches)
    parts = [jnp.pad(b, ((0, -n % chunk),) + ((0, 0),) * (b.ndim - 1)).reshape(-1, chunk, *b.shape[1:])
             for b in batches]
    out = jax.lax.map(lambda part: fn(*part), parts)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


def unravel_switches(switches: Array, in_width: int) -> tuple[Array, Array]:
    """Switches (flat indices) -> (rows, cols) in the pre-pool map."""
    return switches // in_width, switches % in_width


def count_params(tree: Arch | Params) -> int:
    """Number of weights and biases of an `Arch` (from shapes) or of a params pytree."""
    if isinstance(tree, Arch):
        return sum(math.prod(s) for layer in param_shapes(tree).values() for s in layer.values())
    return sum(int(np.prod(np.shape(a))) for a in jax.tree_util.tree_leaves(tree))


def macs(arch: Arch) -> dict[str, int]:
    """Multiply-accumulates per image of every conv and fc layer (biases, pooling and LCN not counted)."""
    shapes = arch.shapes()
    pshapes = param_shapes(arch)
    out = {}
    for c in arch.convs:
        h, w, _ = shapes[c.name]
        out[c.name] = h * w * math.prod(pshapes[c.name]["w"])
    for name in [f.name for f in arch.fcs] + ["fc8"]:
        out[name] = math.prod(pshapes[name]["w"])
    return out
