"""Top-9 of every conv5 channel over a set of images (the paper's Fig. 2 scan): `topk.scan` vs a torch loop.

The torch loop runs the twin network to relu5 in no-grad batches and keeps, per channel, each image's maximum, then
sorts once: the same values and images. Usage: ``python -m benchmarks.topk_scan [--quick] [--images 512]``.
"""
from __future__ import annotations

import numpy as np

from benchmarks import common
from zfjax.analyses import topk

K, BATCH = 9, 32


def torch_topk(net, images: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, image indices) (channels, k): per channel the k images with the largest maximum; and every
    image's maximum per channel (images, channels)."""
    torch = common.setup_torch()
    upto = net[: list(dict(net.named_children())).index("relu5") + 1]
    best = []
    with torch.no_grad():
        for i in range(0, len(images), BATCH):
            best.append(upto(common.to_nchw(images[i:i + BATCH])).flatten(2).amax(2))  # (B, C)
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
    got, (values, _, best) = ours(), torch_topk(net, images)
    err = common.max_rel_err(got.values, values)
    # near-ties may pick different images under float rounding: each chosen image must carry its reported value
    chosen = best[got.image, np.arange(best.shape[1])[:, None]]
    agree = err <= 1e-4 and common.max_rel_err(got.values, chosen) <= 1e-4
    a, b = common.abab(ours, lambda: torch_topk(net, images), rounds)
    return common.report("topk_scan", a, b, agree, compile_s=compile_s, err=err, images=num, size=size)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    bench(args.images or (128 if args.quick else 512), args.rounds or 5, args.size)


if __name__ == "__main__":
    main()
