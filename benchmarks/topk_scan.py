"""Top-9 of every conv5 channel over a set of images (the paper's Fig. 2 scan): `topk.scan` vs a torch loop.

The torch loop runs the twin network cut after relu5 in no-grad batches of the same size and keeps, per channel,
each image's maximum, then sorts once: the same values and images. It gets its fastest form (`common.fastest`):
NCHW or channels-last. Usage: ``python -m benchmarks.topk_scan [--quick] [--images 512]``.
"""
from __future__ import annotations

import functools

import numpy as np

from benchmarks import common, roofline
from benchmarks.deconv import cut
from zfjax.analyses import topk

K, BATCH = 9, 32


def torch_topk(net, images: np.ndarray, k: int = K, last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, image indices) (channels, k): per channel the k images with the largest maximum; and every
    image's maximum per channel (images, channels). `net` runs to relu5; `last`: batches go in channels-last."""
    torch = common.setup_torch()
    upto = cut(net)
    best = []
    with torch.no_grad():
        for i in range(0, len(images), BATCH):
            x = common.to_nchw(images[i:i + BATCH])
            best.append(upto(common.channels_last(x) if last else x).flatten(2).amax(2))  # (B, C)
        best = torch.cat(best)
        values, index = best.topk(k, dim=0)  # (k, C)
    return values.T.numpy(), index.T.numpy(), best.numpy()


def bench(num: int, rounds: int, size: int = 224) -> dict:
    arch, params, images, net = common.zfnet(size, num)
    images = np.asarray(images)
    batches = lambda: (images[i:i + BATCH] for i in range(0, num, BATCH))  # noqa: E731

    def ours():
        return topk.scan(arch, params, batches(), layer="conv5", k=K)

    compile_s = common.warm(ours)
    got, (_, _, best) = ours(), torch_topk(net, images)
    # near-ties may pick different images under float rounding: each chosen image must carry its reported value
    chosen = best[got.image, np.arange(best.shape[1])[:, None]]
    forms = {"NCHW": functools.partial(torch_topk, net, images),
             "channels-last": functools.partial(torch_topk, common.channels_last(cut(net)), images, last=True)}
    ref = common.fastest({name: lambda f=f: f()[0] for name, f in forms.items()}, got.values, 1e-4)
    agree = ref.err <= 1e-4 and common.max_rel_err(got.values, chosen) <= 1e-4
    timing = common.abab(ours, ref.fn, rounds)
    gflop = roofline.gflop(num * roofline.forward_macs(arch, "conv5"))
    return common.report("topk_scan", timing, agree, compile_s=compile_s, err=ref.err, gflop=gflop, images=num,
                         size=size, reference_form=ref.name, reference_forms=ref.seconds)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    bench(args.images or (128 if args.quick else 512), args.rounds or 5, args.size)


if __name__ == "__main__":
    main()
