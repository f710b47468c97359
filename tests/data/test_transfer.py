"""Transfer datasets: image folders (Caltech-256 layout), TFDS caltech101 / voc2012 on mock data, splits, dedup, and
image files of every kind decoded to the values numpy computes from PIL's raw data."""
import numpy as np
import pytest
from PIL import Image

from zfjax.data import transfer


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for cls, n in (("001.ak47", 3), ("002.bat", 2), ("257.clutter", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            im = rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
            Image.fromarray(im).save(tmp_path / cls / f"{i:04d}.png")
            images[(cls, i)] = im
    (tmp_path / "002.bat" / "notes.txt").write_text("not an image")
    return images


def test_image_folder_reads_caltech256_layout(tmp_path):
    images = _folder(tmp_path)
    data = transfer.image_folder(tmp_path)
    assert data.classes == ("ak47", "bat")  # clutter excluded, folder order
    np.testing.assert_array_equal(data.labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(data.images[4], images[("002.bat", 1)])
    assert len(transfer.image_folder(tmp_path, exclude=()).classes) == 3
    with pytest.raises(FileNotFoundError, match="256_ObjectCategories"):
        transfer.image_folder(tmp_path / "missing")


def test_per_class_split_properties():
    labels = np.repeat(np.arange(4), [10, 20, 5, 40])
    train, test = transfer.per_class_split(labels, 5, max_test=8, seed=3)
    assert not set(train) & set(test)
    assert np.bincount(labels[train]).tolist() == [5, 5, 5, 5]
    assert np.bincount(labels[test], minlength=4).tolist() == [5, 8, 0, 8]
    again = transfer.per_class_split(labels, 5, max_test=8, seed=3)
    np.testing.assert_array_equal(train, again[0])
    assert not np.array_equal(train, transfer.per_class_split(labels, 5, max_test=8, seed=4)[0])


def test_drop_duplicates_by_pixel_hash(tmp_path):
    images = _folder(tmp_path)
    data = transfer.image_folder(tmp_path)
    seen = {transfer.image_hash(images[("001.ak47", 1)]), transfer.image_hash(np.zeros((2, 2, 3), np.uint8))}
    kept, dropped = transfer.drop_duplicates(data, seen)
    assert dropped == 1 and len(kept.labels) == 4
    assert all(transfer.image_hash(kept.images[i]) not in seen for i in range(4))
    digits = transfer.digits()
    kept, dropped = transfer.drop_duplicates(digits, {transfer.image_hash(digits.images[0])})
    assert dropped >= 1 and len(kept.images) == len(digits.images) - dropped


def test_digits_and_to_input():
    d = transfer.digits()
    assert d.images.shape == (1797, 8, 8, 1) and d.images.dtype == np.uint8 and d.images.max() == 255
    x = transfer.to_input(d.images[:3], 28, 1, mean=10.0, scale=0.5)
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.float32
    flat = transfer.to_input([np.full((30, 40, 3), 200, np.uint8)], 16, 3, mean=np.float32(100.0))
    np.testing.assert_allclose(flat, 100.0, atol=1e-4)  # a flat image stays flat through resize and crop


def test_caltech101_and_voc_on_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        cal = transfer.caltech101()
        assert len(cal.classes) == 101 and "background_google" not in [c.lower() for c in cal.classes]
        assert len(cal.labels) == len(cal.images) and cal.labels.max() < 101
        assert cal.images[0].ndim == 3
        voc = transfer.voc2012("validation")
        assert voc.labels.shape[1] == 20 and len(voc.classes) == 20 and voc.images[0].shape[2] == 3
        assert set(np.unique(voc.labels)) <= {0, 1}
    with pytest.raises(ValueError, match="test has no labels"):
        transfer.voc2012("test")


def _raw(path):
    """The pixel data PIL decodes from `path`, untouched (no conversion, no orientation)."""
    with Image.open(path) as im:
        return np.asarray(im)


def test_read_image_scales_bit_depth_and_resolves_palette_alpha_and_exif(tmp_path):
    rng = np.random.default_rng(1)
    grey16 = rng.integers(0, 65536, (9, 7), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    want = np.round(_raw(tmp_path / "grey16.png") / 65535 * 255)
    got = transfer.read_image(tmp_path / "grey16.png")
    assert got.shape == (9, 7, 3) and got.dtype == np.uint8 and got.max() > 200  # not clipped to white
    np.testing.assert_array_equal(got, np.repeat(want[..., None], 3, axis=2))

    grey8 = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(grey8).save(tmp_path / "grey8.png")
    np.testing.assert_array_equal(transfer.read_image(tmp_path / "grey8.png"), np.repeat(grey8[..., None], 3, 2))

    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as im:
        lut = np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(transfer.read_image(tmp_path / "palette.png"), lut[_raw(tmp_path / "palette.png")])

    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    raw = _raw(tmp_path / "rgba.png").astype(np.float64)
    over_white = raw[..., :3] * raw[..., 3:] / 255 + 255 * (1 - raw[..., 3:] / 255)
    np.testing.assert_array_equal(transfer.read_image(tmp_path / "rgba.png"), np.round(over_white))

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = np.rot90(_raw(tmp_path / "rotated.jpg"), k=-1)
    np.testing.assert_array_equal(transfer.read_image(tmp_path / "rotated.jpg"), upright)


def test_read_image_names_a_missing_corrupt_or_truncated_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file at .*nowhere.png"):
        transfer.read_image(tmp_path / "nowhere.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*text\.jpg: UnidentifiedImageError"):
        transfer.read_image(tmp_path / "text.jpg")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cannot read image .*cut\.png: OSError: .*truncated"):
        transfer.read_image(tmp_path / "cut.png")
