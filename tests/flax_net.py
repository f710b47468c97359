"""A user's own Flax model, for ``--config.model=flax_net:network`` in tests: two conv + ReLU + max-pool stages
and a dense classifier on 28x28 grey images (random weights, fixed seed), wrapped by `zfjax.network.adapters.network`.
The rectified maps are sown as ``conv_a`` and ``conv_b``, the points the explorer shows."""
import flax.linen as nn
import jax
import numpy as np

from zfjax.network import adapters


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        for name, features in (("conv_a", 6), ("conv_b", 8)):
            x = nn.relu(nn.Conv(features, (3, 3), padding="SAME")(x))
            self.sow("intermediates", name, x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(10)(x.reshape(len(x), -1))


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] -> the model's inputs, centered."""
    return np.asarray(pixels, np.float32) - 0.5


def network():
    variables = Net().init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
    return adapters.network(Net(), variables, input_shape=(28, 28, 1), name="flax_net", layers=("conv_a", "conv_b"),
                            preprocess=preprocess)
