"""zfjax: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks" (2013), in JAX.

Importing zfjax turns off XLA:CPU's YNNPACK convolution path on the jaxlib versions where it is known to be slower
(1.5-3x on ZFNet's layers, measured; results agree to float rounding), by appending
``--xla_cpu_experimental_ynn_fusion_type=`` to ``XLA_FLAGS``. This only takes effect if zfjax is imported before
the first JAX computation, never touches GPU/TPU code, and is skipped when ``ZFJAX_KEEP_XLA_FLAGS=1`` or when
``XLA_FLAGS`` already names the option. Results of a resumed training run are bit-identical only under the same
flags, so the training loop records them with its checkpoints.
"""
import os as _os

_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _fast_cpu_flags() -> None:
    """Append the YNNPACK opt-out to XLA_FLAGS on jaxlib 0.10.x (where the flag exists and is measured slower)."""
    if _os.environ.get("ZFJAX_KEEP_XLA_FLAGS") == "1":
        return
    try:
        from importlib.metadata import version
        jaxlib_version = version("jaxlib")
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave flags alone
        return
    flags = _os.environ.get("XLA_FLAGS", "")
    if jaxlib_version.startswith("0.10.") and "xla_cpu_experimental_ynn_fusion_type" not in flags:
        _os.environ["XLA_FLAGS"] = (flags + " " + _YNN_FLAG).strip()


_fast_cpu_flags()

from zfjax.network import layers, models  # noqa: E402

__all__ = ["layers", "models"]
