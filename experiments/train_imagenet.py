"""Train a network of the paper: ``python -m experiments.train_imagenet --config=<config file> --workdir=<dir>``.

The config is an ml_collections file from ``experiments/configs/`` (its docstring shows the launch command);
``--config.<field>=<value>`` overrides a field. A run resumes from the newest checkpoint in ``--workdir`` and ends by
printing what it trained and wrote; errors a user can cause are one line (`experiments.cli`, ``--verbose``).
Multi-host: pass ``--distributed`` (jax.distributed.initialize() detects the cluster), or the coordinator address,
process count and id explicitly.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli, distributed
from experiments.configs import default
from zfjax.training import train

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, snapshots, metrics and figures.",
                               required=True)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (experiments/configs/*.py).",
                                          lock_config=True)
distributed.define_flags()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    distributed.initialize()
    logging.info("JAX processes %d/%d, devices %s", jax.process_index(), jax.process_count(), jax.devices())
    start = time.perf_counter()
    config = cli.config_value(_CONFIG)
    default.check_fields(config)
    train.train_and_evaluate(config, _WORKDIR.value)
    if jax.process_index() == 0:
        print(f"done in {time.perf_counter() - start:.0f} s; {train.summary(_WORKDIR.value)}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    cli.run_app(main)
