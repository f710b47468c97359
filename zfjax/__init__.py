"""zfjax: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks" (2013), in JAX.

Importing zfjax applies two process-wide CPU settings (`zfjax.cpu_settings`: YNNPACK off in ``XLA_FLAGS``,
freed memory kept for reuse), each with an opt-out environment variable. Import zfjax before the first JAX
computation for them to take effect; results of a resumed training run are bit-identical only under the same
``XLA_FLAGS``, so the training loop records them with its checkpoints.
"""
from zfjax import cpu_settings as _cpu_settings

_cpu_settings.apply()

from zfjax.network import layers, models  # noqa: E402

__all__ = ["layers", "models"]
