"""The multi-host flags of the scripts that run on many processes (train_imagenet, explore), and the one call that
starts `jax.distributed` from them: ``--distributed`` (jax.distributed.initialize() detects the cluster), or the
coordinator address, process count and id explicitly."""
from __future__ import annotations

import jax
from absl import flags


def define_flags() -> None:
    """Define ``--distributed``, ``--coordinator_address``, ``--num_processes`` and ``--process_id``."""
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies --distributed).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's id (with --coordinator_address).")


def initialize() -> None:
    """Start jax.distributed when the flags ask for it (before any JAX computation)."""
    f = flags.FLAGS
    if f.distributed or f.coordinator_address:
        jax.distributed.initialize(coordinator_address=f.coordinator_address, num_processes=f.num_processes,
                                   process_id=f.process_id)
