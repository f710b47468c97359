"""Input pipelines: IDX reader, grain iteration (shuffling, host sharding, resume), eval padding, ImageNet
preprocessing (resize/center crop, 10 crops, pixel mean) on TFDS mock data, and the missing-ImageNet message."""
import gzip
import struct

import jax
import ml_collections
import numpy as np
import pytest

from zfjax import data as data_lib
from zfjax.data import fashion_mnist, imagenet, pipeline


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_bad_magic(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    _write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        fashion_mnist.read_idx(tmp_path / "bad")


def test_fashion_mnist_real_files_are_balanced():
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = fashion_mnist.load(split)
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.load("train", "/nonexistent")


def _ids(n=40):
    return pipeline.ArraySource("ids", np.arange(n)[:, None], np.arange(n))


def _take(it, k):
    return [next(it)["label"] for _ in range(k)]


def _tag(ex, rng):
    return {"label": ex["label"], "aug": rng.integers(1 << 30)}


def test_train_iterator_epochs_are_permutations_and_resume_exactly():
    it = pipeline.train_iterator(_ids(), _tag, global_batch=8, seed=3, num_threads=1)
    batches = _take(it, 10)  # two epochs of 5 batches
    for epoch in (batches[:5], batches[5:]):
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(40))
    assert not np.array_equal(np.concatenate(batches[:5]), np.arange(40))  # shuffled
    it2 = pipeline.train_iterator(_ids(), _tag, global_batch=8, seed=3, num_threads=1)
    _take(it2, 3)
    state = it2.get_state()
    it3 = pipeline.train_iterator(_ids(), _tag, global_batch=8, seed=3, num_threads=1)
    it3.set_state(state)
    for a, b in zip(_take(it3, 7), batches[3:]):
        np.testing.assert_array_equal(a, b)


def test_hosts_together_feed_the_one_host_global_batch(monkeypatch):
    one_it = pipeline.train_iterator(_ids(), _tag, global_batch=12, seed=1, num_threads=1)
    want = [next(one_it) for _ in range(4)]
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    parts = []
    for h in range(3):
        monkeypatch.setattr(jax, "process_index", lambda h=h: h)
        it = pipeline.train_iterator(_ids(), _tag, global_batch=12, seed=1, num_threads=1)
        parts.append([next(it) for _ in range(4)])
    for s in range(4):
        for key in ("label", "aug"):
            np.testing.assert_array_equal(np.concatenate([p[s][key] for p in parts]), want[s][key])
    with pytest.raises(ValueError, match="divisible by the number of hosts 3"):
        pipeline.train_iterator(_ids(), _tag, global_batch=10, seed=1)


def test_eval_batches_cover_every_example_once_with_mask():
    batches = list(pipeline.eval_batches(_ids(10), lambda ex: {"label": ex["label"]}, global_batch=4, num_threads=1))
    labels = np.concatenate([b["label"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    assert len(labels) == 12 and mask.sum() == 10
    np.testing.assert_array_equal(np.sort(labels[mask > 0]), np.arange(10))


def _smooth_161(a, axis):
    """[1, 6, 1] / 8 along `axis` ([6, 1] / 7 at the edges): antialiased bilinear halving of a 2x-repeated image."""
    a = np.moveaxis(a, axis, 0)
    out = 6 * a.copy()
    out[1:] += a[:-1]
    out[:-1] += a[1:]
    weight = np.full(len(a), 8.0)
    weight[[0, -1]] = 7.0
    return np.moveaxis(out / weight.reshape(-1, *[1] * (a.ndim - 1)), 0, axis)


def test_resize_center_matches_antialiased_bilinear_reference():
    small = np.random.default_rng(0).integers(0, 256, (256, 384, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((2, 2, 1), np.uint8))  # 512x768, short side to 256 halves it
    out = imagenet.resize_center(big, 256)
    ref = _smooth_161(_smooth_161(small.astype(np.float64), 0), 1)[:, 64:320]
    assert out.shape == (256, 256, 3)
    assert np.abs(out - ref).max() <= 1.0
    with pytest.raises(ValueError, match=r"RGB image of shape \(H, W, 3\)"):
        imagenet.resize_center(big[..., 0], 256)


def test_ten_crops_positions_and_flips():
    h, w, crop = 9, 11, 4
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([rows, cols, rows * 100 + cols], -1)
    crops = imagenet.ten_crops(image, crop)
    assert crops.shape == (10, crop, crop, 3)
    corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), ((h - crop) // 2, (w - crop) // 2)]
    for k, (t, l) in enumerate(corners):
        np.testing.assert_array_equal(crops[k, :, :, 0], rows[t:t + crop, l:l + crop])
        np.testing.assert_array_equal(crops[k, :, :, 1], cols[t:t + crop, l:l + crop])
        np.testing.assert_array_equal(crops[k + 5, :, :, 1], cols[t:t + crop, l:l + crop][:, ::-1])
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = imagenet.random_crop_flip(image, crop, rng)
        t, l = c[0, :, 0].min(), c[0, :, 1].min()
        window = image[t:t + crop, l:l + crop]
        assert np.array_equal(c, window) or np.array_equal(c, window[:, ::-1])


def imagenet_config(tmp_path, size=16):
    c = ml_collections.ConfigDict({"dataset": "imagenet2012", "data_dir": str(tmp_path), "resize_size": size + 4,
                                   "image_size": size, "pixel_scale": 1.0, "train_subset": 0, "eval_subset": 0})
    return c


def test_imagenet_mock_preprocessing_against_numpy(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        d = data_lib.load(imagenet_config(tmp_path))
        raw = [d.train[i] for i in range(len(d.train))]
        val = d.eval[0]
    resized = np.stack([imagenet.resize_center(np.asarray(r["image"]), 20) for r in raw]).astype(np.float64)
    mean = resized.mean(0)
    stored = np.load(tmp_path / "imagenet2012" / "pixel_mean_20_n6.npy")
    np.testing.assert_allclose(stored, mean, rtol=1e-5)
    ex = d.eval_transform(val)
    centered = imagenet.resize_center(np.asarray(val["image"]), 20) - mean
    ref = np.stack([centered[t:t + 16, l:l + 16] for t, l in ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))])
    np.testing.assert_allclose(ex["image"], np.concatenate([ref, ref[:, :, ::-1]]), atol=1e-4)
    tr = d.train_transform(raw[0], np.random.default_rng(0))
    assert tr["image"].shape == (16, 16, 3) and tr["image"].dtype == np.float32 and d.num_crops == 10


def test_missing_imagenet_names_the_tars_and_where_they_go(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError) as e:
        data_lib.load(imagenet_config(tmp_path))
    manual = tmp_path / "downloads" / "manual"
    for tar in imagenet.TARS:
        assert str(manual / tar) in str(e.value)
