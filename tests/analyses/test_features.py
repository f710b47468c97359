"""Feature extraction: grid pooling equals torch's adaptive max pool, chunks stream to disk and are reused."""
import jax
import numpy as np
import pytest

from zfjax.analyses import features
from zfjax.network import models

torch = pytest.importorskip("torch")

ARCH = models.get("small")
PARAMS = models.init(ARCH, jax.random.key(0))
IMAGES = np.random.default_rng(0).normal(size=(10, 28, 28, 1)).astype(np.float32)


def _batches(n=4):
    return (IMAGES[i:i + n] for i in range(0, len(IMAGES), n))


@pytest.mark.parametrize("layer,grid", [("pool1", 4), ("conv3", 3), ("fc7", 4), ("pool5", None)])
def test_features_match_reference(layer, grid):
    got = features.extract(ARCH, PARAMS, _batches(), layer, grid=grid)
    act = np.asarray(models.apply(ARCH, PARAMS, IMAGES).acts[layer])
    if act.ndim == 4 and grid is not None:
        pooled = torch.nn.functional.adaptive_max_pool2d(torch.tensor(act).permute(0, 3, 1, 2), grid)
        ref = pooled.permute(0, 2, 3, 1).reshape(len(act), -1).numpy()
    else:
        ref = act.reshape(len(act), -1)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())  # batch sizes differ


def test_chunks_are_written_and_reused(tmp_path):
    first = features.extract(ARCH, PARAMS, _batches(), "fc6", out_dir=tmp_path)
    chunks = sorted(p.name for p in tmp_path.iterdir())
    assert chunks == ["chunk_000000.npy", "chunk_000001.npy", "chunk_000002.npy"]
    marked = np.load(tmp_path / chunks[1]) + 1000.0
    np.save(tmp_path / chunks[1], marked)  # a finished chunk is read back, not recomputed
    again = features.extract(ARCH, PARAMS, _batches(), "fc6", out_dir=tmp_path)
    np.testing.assert_array_equal(again[4:8], marked)
    np.testing.assert_array_equal(again[:4], first[:4])


def test_bad_layer_and_grid():
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        features.extract(ARCH, PARAMS, _batches(), "fc9")
    with pytest.raises(ValueError, match="grid 5 is finer than the 3x3 map"):
        features.extract(ARCH, PARAMS, _batches(), "pool5", grid=5)
