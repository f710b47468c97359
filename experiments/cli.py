"""The command line every ``python -m experiments.<name>`` shares: flag parsing, one-line errors, quiet logs and the
closing summary.

- `main(run)`: the config-driven experiments: ``--config`` (an ml_collections file from ``experiments/configs/``,
  ``--config.<field>=`` overrides) and ``--workdir``; calls ``run(config, workdir)``, then prints what it wrote.
- `run_app(main)`: the scripts with flags of their own (train_imagenet, demo, import_weights).

Errors a user causes end the run with one line on stderr, ``error: <what is wrong> (<where to look next>)``, and
exit status 1: a bad flag, config file or config field, bad input (`ValueError` from validation),
missing data or checkpoints (`FileNotFoundError`), an unusable workdir (`WorkdirError`), a diverging run
(`FloatingPointError`). ``--verbose`` shows their traceback instead, and the libraries' INFO logs. Any other exception
is a bug and keeps its traceback. Without ``--verbose`` (or absl's ``--verbosity``) logs are at WARNING level.
"""
from __future__ import annotations

import pathlib
import sys
import time
from typing import Any, Callable, NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

from zfjax.training.checkpoints import WorkdirError

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, WorkdirError, FloatingPointError)
VERBOSE = "verbose"


def main(run: Callable[[Any, pathlib.Path], Any]) -> None:
    """Define and parse ``--config``/``--workdir``, call ``run(config, workdir)`` and print a summary of the files it
    wrote (with ``results.md``'s table, when it wrote one).

    Flags are defined here, not at import, so that tests can import several experiment modules in one process.
    """
    workdir = flags.DEFINE_string("workdir", None, "Output directory: results.json, results.md, index.html, figures.")
    config = config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/configs/*.py).",
                                             lock_config=True)
    flags.mark_flags_as_required(["config", "workdir"])

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}")
        start = time.time()
        run(config_value(config), pathlib.Path(workdir.value))
        print(summary(pathlib.Path(workdir.value), start, time.time() - start))

    run_app(_main)


def run_app(main: Callable[[list[str]], Any]) -> None:
    """`absl.app.run(main)` with the error handling and log level of the module docstring."""
    flags.DEFINE_bool(VERBOSE, False, "Show the traceback of errors and the libraries' INFO logs.")
    app.run(lambda argv: _guarded(main, argv), flags_parser=_parse_flags)


def _guarded(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    verbose = flags.FLAGS[VERBOSE].value
    if not verbose and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        return main(argv)
    except USER_ERRORS as e:
        if verbose:
            raise
        prefix = "missing data: " if isinstance(e, FileNotFoundError) else ""
        _fail(f"{prefix}{_one_line(e)}", hint=f"(--{VERBOSE} shows the traceback)")


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config-file and config-field errors (raised by ml_collections while the flags
    are parsed) as one line naming the flag."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - ml_collections raises KeyError/AttributeError/OSError/ValueError here
        if f"--{VERBOSE}" in argv:
            raise
        _fail(_flag_message(e, argv), hint="(--helpshort lists the flags)")


def _flag_message(error: Exception, argv: list[str]) -> str:
    """What a flag-parsing failure says: the unknown config field and its override, or the root cause."""
    chain = [error]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    keys = [e.args[0] for e in chain if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str)]
    if keys:
        name, _, hint = keys[0].partition("\n")
        name = name.strip("'\"")
        flag = next((a for a in argv if a.startswith("--config.") and name in a.split("=")[0].split(".")), "")
        return f"config has unknown fields [{name!r}] ({flag}){': ' + hint if hint else ''}"
    message = _one_line(error)
    if "Traceback" in message:  # absl quotes a config file's own traceback: name the flag and the root cause
        root = next((_one_line(e) for e in reversed(chain) if str(e)), type(chain[-1]).__name__)
        message = f"{message.split(': ')[0]}: {root}"
    return f"bad flag: {message}"


def config_value(holder: flags.FlagHolder) -> Any:
    """The parsed config of a `config_flags.DEFINE_config_file` flag. ml_collections reports a config file that
    does not load only when the config is first used; this ends the run there with one line naming the file."""
    config = holder.value
    try:
        config.keys()
    except OSError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        _fail(f"cannot load --{holder.name}: {lines[-1] if lines else e}", hint="(--helpshort lists the flags)")
    return config


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _fail(message: str, hint: str) -> NoReturn:
    print(f"error: {message} {hint}", file=sys.stderr)
    sys.exit(1)


def summary(workdir: pathlib.Path, since: float, seconds: float) -> str:
    """What a run wrote into `workdir` (the entries changed since `since`) and, when it wrote one, its results.md."""
    names = sorted(p.name + "/" * p.is_dir() for p in workdir.iterdir()
                   if not p.name.startswith(".") and p.stat().st_mtime >= since) if workdir.is_dir() else []
    text = f"done in {seconds:.0f} s; wrote {workdir}/: {', '.join(names) or 'nothing'}"
    if "index.html" in names:
        text += f"\nopen {workdir / 'index.html'}"
    if "results.md" in names:
        text += "\n" + (workdir / "results.md").read_text().rstrip()
    return text
