"""grain pipelines shared by every dataset: deterministic, checkpointable, sharded across hosts.

The training stream is one global sequence (shuffled per epoch with a fixed seed, augmented with a per-element rng
from zfjax import files
from grain); host ``h`` of ``P`` takes local batches ``h, h + P, ...`` of it, so global batch ``s`` is elements
``s*B .. s*B+B-1`` whatever the number of hosts, and an iterator's position is all its state (`get_state`).
"""
from __future__ import annotations

import math
import pathlib
from typing import Any, Callable, Iterator

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zfjax import files


Example = dict[str, Any]


class ArraySource:
    """Random-access source over in-memory arrays (grain needs ``len``/``getitem`` and a stable ``repr``)."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray):
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.name, self.images, self.labels = name, images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Example:
        return {"image": self.images[i], "label": self.labels[i]}

    def __repr__(self) -> str:
        return f"ArraySource({self.name!r}, n={len(self)})"


class Subset:
    """The first `n` examples of a source (small runs and tests)."""

    def __init__(self, source: Any, n: int):
        if not 0 < n <= len(source):
            raise ValueError(f"subset size {n} must be in 1..{len(source)} (the size of {source!r})")
        self.source, self.n = source, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.source[i]

    def __repr__(self) -> str:
        return f"Subset({self.source!r}, {self.n})"


def _local_batch(global_batch: int) -> int:
    if global_batch % jax.process_count():
        raise ValueError(f"batch_size {global_batch} must be divisible by the number of hosts {jax.process_count()}")
    return global_batch // jax.process_count()


def _read_options(num_threads: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2 * num_threads, 1))


def train_iterator(source: Any, transform: Callable[[Example, np.random.Generator], Example], *, global_batch: int,
                   seed: int, num_threads: int = 2) -> grain.DatasetIterator:
    """Endless iterator of this host's share of shuffled, augmented batches; `get_state`/`set_state` resume it."""
    local = _local_batch(global_batch)
    ds = (grain.MapDataset.source(source).seed(seed).shuffle().repeat(None).random_map(transform)
          .batch(local, drop_remainder=True))
    ds = ds[jax.process_index()::jax.process_count()]
    return iter(ds.to_iter_dataset(_read_options(num_threads)))


def eval_batches(source: Any, transform: Callable[[Example], Example], *, global_batch: int,
                 num_threads: int = 2) -> Iterator[Example]:
    """This host's share of every example once, padded to whole global batches; ``mask`` is 0 on padding."""
    local, n = _local_batch(global_batch), len(source)
    padded = math.ceil(n / global_batch) * global_batch
    ds = grain.MapDataset.range(padded).map(lambda i: {**transform(source[i % n]), "mask": np.float32(i < n)})
    ds = ds.batch(local)[jax.process_index()::jax.process_count()]
    return iter(ds.to_iter_dataset(_read_options(num_threads)))


def shard_batches(example: Callable[[int], Example], n: int, *, batch_size: int,
                  num_threads: int = 2) -> Iterator[Example]:
    """This host's share of examples ``example(0) .. example(n - 1)`` (host h of P takes h, h + P, ...), in batches
    of up to `batch_size` (the last one may be smaller); each example carries its index as ``"index"``."""
    ds = grain.MapDataset.range(n)[jax.process_index()::jax.process_count()]
    ds = ds.map(lambda i: {**example(int(i)), "index": np.int64(i)}).batch(batch_size)
    return iter(ds.to_iter_dataset(_read_options(num_threads)))


def data_mesh() -> Mesh:
    """A 1-D mesh over all devices of all hosts, axis ``data`` (the batch axis), with classic (Auto) sharding."""
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def to_global(batch: Example, mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays sharded along the mesh's ``data`` axis."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def pixel_mean(source: Any, pixels: Callable[[Example], np.ndarray], path: pathlib.Path, *,
               num_threads: int = 8) -> np.ndarray:
    """Per-pixel mean over `source`, computed once (each host sums its share) and stored at `path` (.npy)."""
    path = pathlib.Path(path)
    if path.is_file():
        return np.load(path)
    ds = grain.MapDataset.source(source)[jax.process_index()::jax.process_count()].map(
        lambda ex: pixels(ex).astype(np.float64))
    total, count = 0.0, 0
    for image in ds.to_iter_dataset(_read_options(num_threads)):
        total, count = total + image, count + 1
    if jax.process_count() > 1:
        total = multihost_utils.process_allgather(np.asarray(total)).sum(0)
        count = int(multihost_utils.process_allgather(np.asarray(count)).sum())
    mean = (np.asarray(total) / count).astype(np.float32)
    if jax.process_index() == 0:
        with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, mean)
    return mean
