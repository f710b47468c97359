"""The command line shared by the quantitative experiments (ablations, transfer, voc, layer_features):
``--config`` (an ml_collections file from ``experiments/configs/``, ``--config.<field>=`` overrides) and
``--workdir``. A missing dataset or checkpoint ends the run with one message saying what to get and where."""
from __future__ import annotations

import pathlib
import sys
from typing import Any, Callable

from absl import app, flags
from ml_collections import config_flags


def main(run: Callable[[Any, pathlib.Path], Any]) -> None:
    """Define and parse the flags, call ``run(config, workdir)``; FileNotFoundError becomes a one-line exit message.

    Flags are defined here, not at import, so that tests can import several experiment modules in one process.
    """
    workdir = flags.DEFINE_string("workdir", None, "Output directory: results.json, results.md, index.html, figures.")
    config = config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/configs/*.py).",
                                             lock_config=True)

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}")
        try:
            run(config.value, pathlib.Path(workdir.value))
        except FileNotFoundError as e:
            sys.exit(f"error: missing data: {e}")

    flags.mark_flags_as_required(["config", "workdir"])
    app.run(_main)
