"""zfjax.pictures.tiles (tiles of projected units, filter spectra) and zfjax.pictures.plots's mosaics, on a narrow
small net."""
import jax
import numpy as np
import pytest

from zfjax import deconv, network
from zfjax.analyses import spectrum, topk
from zfjax.network import models
from zfjax.pictures import plots, tiles
from zfjax.network.receptive_field import receptive_field

LAYERS = ("conv1", "pool1", "conv2", "conv3", "conv5")
# deconv.project on one image, unbatched and uncropped (channel and position traced: one compile per layer)
_project = jax.jit(deconv.project, static_argnames=("arch", "layer"))


@pytest.fixture(scope="module")
def net():
    arch = models.get("small", conv1={"features": 6}, conv2={"features": 8}, conv3={"features": 8},
                      conv4={"features": 8}, conv5={"features": 8}, fc6={"features": 16}, fc7={"features": 16})
    params = models.init(arch, jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(10, 28, 28, 1)).astype(np.float32)
    return arch, params, x, network.from_arch(arch, params, 0.0, 1.0)


@pytest.mark.parametrize("layer", ["conv3"])
def test_top_tiles_equal_deconv_project_of_the_same_unit(reference_tile, net, layer):
    arch, params, x, n = net
    top = topk.scan(arch, params, [x[:6], x[6:]], layer=layer, k=3)
    channels = np.array([0, 3, 7])
    cut = tiles.top_tiles(n, top, channels, lambda i: (x[i], x[i] * 0 + 0.25), layer)
    assert cut.projections.shape[:2] == (3, 3) and cut.patches.shape == cut.projections.shape
    for m, c in enumerate(channels):
        for j in range(3):
            image, pos = top.image[c, j], (top.h[c, j], top.w[c, j])
            want = np.asarray(_project(arch, params, x[image][None], layer, c, position=np.array(pos)))[0]
            assert np.abs(want).max() > 0
            np.testing.assert_allclose(cut.projections[m, j], reference_tile(want, cut.windows[m, j]),
                                       atol=1e-5 * np.abs(want).max())
            inside = reference_tile(np.ones_like(want), cut.windows[m, j]) > 0
            np.testing.assert_array_equal(cut.patches[m, j], np.where(inside, 0.25, 0.5))


@pytest.mark.parametrize("layer", LAYERS)
def test_tile_holds_the_units_support_and_its_receptive_field(net, layer):
    arch, params, x, n = net
    h, w, c = arch.shapes()[layer]
    positions = np.array([[0, 0], [h - 1, w - 1], [h // 2, w // 2], [0, w - 1], [h // 3, 0]])
    channels = np.arange(len(positions)) % c
    projections = tiles.project_units(n, layer, x[:len(positions)], channels, positions, chunk=4)
    cut = tiles.windows(tiles.field(n, layer), positions, (28, 28))
    size = tiles.field(n, layer).size()
    assert np.all(cut[:, 1] - cut[:, 0] == size[0]) and np.all(cut[:, 3] - cut[:, 2] == size[1])
    for p, pos, (y0, y1, x0, x1) in zip(projections, positions, cut):
        f = receptive_field(arch, layer, tuple(pos))
        assert y0 <= f[0] and f[1] <= y1 and x0 <= f[2] and f[3] <= x1
        ys, xs = np.nonzero(np.abs(p).sum(-1))
        if len(ys):
            assert y0 <= ys.min() and ys.max() < y1 and x0 <= xs.min() and xs.max() < x1
    interior = receptive_field(arch, layer, (h // 2, w // 2))
    if interior[1] - interior[0] < 28:  # not clipped: the tile is exactly the receptive field
        np.testing.assert_array_equal(cut[2], interior)


def test_project_units_chunks_agree_and_reject_bad_units(net):
    arch, params, x, n = net
    pos = np.array([[1, 2], [5, 5], [13, 0]])
    a = tiles.project_units(n, "conv2", x[:3], [1, 2, 3], pos, chunk=2)
    b = tiles.project_units(n, "conv2", x[:3], [1, 2, 3], pos, chunk=4)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="outside conv2"):
        tiles.project_units(n, "conv2", x[:1], [8], [[0, 0]])
    with pytest.raises(ValueError, match="outside conv2"):
        tiles.project_units(n, "conv2", x[:1], [0], [[14, 0]])
    with pytest.raises(ValueError, match="has no layer 'fc6'"):
        tiles.project_units(n, "fc6", x[:1], [0], [[0, 0]])
    with pytest.raises(ValueError, match="need x"):
        tiles.project_units(n, "conv2", x[:2], [0], [[0, 0]])


def test_crop_pads_outside_and_rejects_mixed_sizes(reference_tile):
    img = np.arange(2 * 5 * 5).reshape(2, 5, 5, 1).astype(np.float32)
    cut = np.array([[-1, 2, 3, 6], [1, 4, 0, 3]])
    got = tiles.crop(img, cut, fill=-7)
    for g, im, t in zip(got, img, cut):
        want = reference_tile(im + 7, t) - 7  # reference_tile pads with 0
        np.testing.assert_array_equal(g, want)
    with pytest.raises(ValueError, match="same size"):
        tiles.crop(img, np.array([[0, 2, 0, 2], [0, 3, 0, 3]]))


def test_radial_spectrum_peaks_at_a_gratings_frequency():
    yy, xx = np.mgrid[:16, :16]
    f1, f2 = 4 / 32, 10 / 32  # cycles/pixel
    gratings = np.stack([np.cos(2 * np.pi * f1 * xx), np.cos(2 * np.pi * f2 * (xx + yy) / np.sqrt(2))], -1)
    freqs, power = spectrum.radial_spectrum(gratings[:, :, None, :], size=32)
    np.testing.assert_allclose(power.sum(1), 1.0, rtol=1e-9)
    assert freqs[np.argmax(power[0])] == pytest.approx(f1)
    assert freqs[np.argmax(power[1])] == pytest.approx(f2, abs=1 / 32)
    m = spectrum.mean_frequency(gratings[:, :, None, :], size=32)
    assert m[0] < m[1]
    with pytest.raises(ValueError, match="HWIO"):
        spectrum.radial_spectrum(np.zeros((40, 40, 1, 1)), size=32)


def test_to_display_inverts_the_input_normalization():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(3, 28, 28, 3)).astype(np.float32)
    mean = rng.uniform(0, 255, size=(30, 30, 3)).astype(np.float32)  # a per-pixel mean, center-cropped to the input
    x = (pixels - mean[1:29, 1:29]) * 0.5
    arch = models.get("small", input_shape=(28, 28, 3))
    net = network.from_arch(arch, None, mean, 0.5)
    np.testing.assert_allclose(net.to_display(x), pixels / 255, atol=1e-6)


def test_block_mosaic_places_each_maps_tiles_in_a_3x3_square():
    blocks = np.arange(5 * 9).reshape(5, 9, 1, 1, 1).astype(np.float32)  # map m, tile t has value 9m + t
    out = plots.block_mosaic(blocks, per_row=2, gap=1, block_gap=4, fill=-1)
    square = 3 * 1 + 2 * 1  # 3 one-pixel tiles and 2 gaps
    assert out.shape == (3 * square + 2 * 4, 2 * square + 4, 1)
    for m in range(5):
        by, bx = divmod(m, 2)
        for t in range(9):
            ty, tx = divmod(t, 3)
            assert out[by * (square + 4) + 2 * ty, bx * (square + 4) + 2 * tx, 0] == 9 * m + t
    assert out[2 * (square + 4), square + 4, 0] == -1  # the sixth block does not exist


def test_evolution_figure_crosses_out_exactly_the_zero_projections():
    cut = np.random.default_rng(2).normal(size=(3, 4, 5, 5, 1)).astype(np.float32)
    cut[1, 2] = 0
    cut[2, 0] = 0
    cut[0, 3, 2, 2, 0] = 0  # one zero pixel is not a zero projection
    fig = plots.evolution_figure({"conv2": cut, "conv3": cut[:, :, :3, :3]}, [1, 2, 3, 4], "t")
    size = 6  # a 5-pixel tile and its gap
    for ax, s in zip(fig.axes, (size, 4)):
        crossed = sorted({(int(round((line.get_ydata().min() + 0.5) / s)), int(round((line.get_xdata().min() + 0.5)
                                                                                    / s))) for line in ax.lines})
        assert crossed == [(1, 2), (2, 0)] and len(ax.lines) == 4  # two diagonals per crossed tile
    plots.pyplot().close(fig)
