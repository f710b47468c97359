"""zfjax.pictures.sprites: 8-bit tiles, sheets written as PNG and read back at the coordinates of each tile."""
import numpy as np
import pytest
from PIL import Image

from zfjax.pictures import sprites


@pytest.mark.parametrize("channels", [1, 3])
def test_a_sheet_round_trips_through_png_at_each_tiles_coordinates(tmp_path, channels):
    rng = np.random.default_rng(0)
    tiles = rng.uniform(size=(3, 4, 5, 7, channels)).astype(np.float32)
    pixels = sprites.pixels(tiles)
    np.testing.assert_array_equal(pixels, np.floor(tiles * 255 + 0.5).astype(np.uint8))
    sheet = sprites.sheet(pixels, gap=2, fill=9)
    assert sheet.shape == (3 * 5 + 2 * 2, 4 * 7 + 3 * 2, channels)
    path = sprites.save(tmp_path / "s.png", sheet)
    with Image.open(path) as image:
        assert image.mode == ("L" if channels == 1 else "RGB")
    back = sprites.load(path)
    np.testing.assert_array_equal(back, sheet)
    for r in range(3):
        for c in range(4):
            np.testing.assert_array_equal(sprites.tile(back, r, c, (5, 7), gap=2), pixels[r, c])
    assert np.all(back[5:7] == 9) and np.all(back[12:14] == 9) and np.all(back[:, 7:9] == 9)  # gaps are `fill`


def test_large_tiles_shrink_with_a_box_filter_keeping_their_aspect():
    tiles = np.zeros((2, 40, 20, 1), np.float32)
    tiles[0, :20] = 1.0  # top half white
    small = sprites.pixels(tiles, max_side=10)
    assert small.shape == (2, 10, 5, 1) and sprites.fitted((40, 20), 10) == (10, 5)
    np.testing.assert_array_equal(small[0, :5], 255)
    np.testing.assert_array_equal(small[0, 5:], 0)
    assert sprites.pixels(tiles, max_side=40).shape == tiles.shape and sprites.fitted((40, 20), 0) == (40, 20)


def test_bad_tiles_are_a_clear_error():
    with pytest.raises(ValueError, match=r"tiles must be \(\.\.\., h, w, 1 or 3\), got shape \(4, 4, 2\)"):
        sprites.pixels(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="sheet tiles must be uint8 pixels"):
        sprites.sheet(np.zeros((1, 1, 2, 2, 1), np.float32))
