"""The ``smoothstab`` command: ``smoothstab <subcommand> ...``.

Each subcommand is one ``add_<name>_parser(subparsers)`` function that registers its options
and its handler (``args.func(args) -> int``); :data:`SUBCOMMANDS` lists them in help order.
Errors the user can fix -- a bad key or value, a missing or damaged file, bad data, a device
this machine lacks, an output path that cannot be written, a full disk -- are one line on stderr
and exit 2; Ctrl-C is one line and exit 130 (rerun the same command to resume). Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from smoothstab import __version__, _startup
from smoothstab.experiments.config.guards import (
    check_device,
    check_no_links,
    check_output_dir,
    check_slug,
)

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig, TrainConfig


def add_train_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``smoothstab train [CONFIG] --out DIR [--quiet] [--set key=value ...]``."""
    p = subparsers.add_parser(
        "train",
        help="train one model per disjoint part of a training set",
        description="Train one model per disjoint part; writes DIR/splits.json, "
        "DIR/model_{p}.pt and DIR/train_metrics.json. A killed run resumes when rerun.",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="a TOML file with a [train] table, or a preset name such as quickstart or "
        "paper/imagenet_resnet50; default: quickstart",
    )
    p.add_argument("--out", required=True, type=Path, help="run directory")
    _common(p, run_dir=False, example="a [train] setting, e.g. --set train.epochs=5 (or epochs=5)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from contextlib import nullcontext
    from dataclasses import replace

    from smoothstab.experiments.config.parse import apply_overrides
    from smoothstab.experiments.io.files import locked
    from smoothstab.experiments.models.distributed import init_distributed
    from smoothstab.experiments.models.trainer import device_name
    from smoothstab.experiments.models.training import train_run

    # The full key form of every subcommand (train.epochs=5), or the short one (epochs=5).
    config = apply_overrides(train_config(args.config), args.overrides, prefix="train")
    if args.quiet:
        config = replace(config, quiet=True)
    check_device(config.device, "device", allow_auto=True)
    out = check_no_links(check_output_dir(args.out))
    main_rank = init_distributed(device_name(config.device)).is_main  # rank 0 locks
    with locked(out) if main_rank else nullcontext():
        train_run(config, out)
    return 0


def train_config(source: str | None) -> TrainConfig:
    """The TrainConfig of a preset name or a TOML file (default: the quickstart's). A file with
    other tables than ``[train]`` is checked whole, as ``smoothstab run`` would."""
    from smoothstab.experiments.config.load import config_from_table, config_path
    from smoothstab.experiments.config.parse import dataclass_from_dict, load_toml
    from smoothstab.experiments.config.tables import TrainConfig

    tables = load_toml(config_path(source))
    if set(tables) - {"train"}:
        return config_from_table(tables).train
    return dataclass_from_dict(TrainConfig, tables.get("train", {}), where="train")


def _common(p: argparse.ArgumentParser, *, run_dir: bool, example: str = "") -> None:
    """``[RUN_DIR]``, ``--quiet`` and the repeatable ``--set KEY=VALUE``."""
    if run_dir:
        p.add_argument("run_dir", type=Path, help="a run directory made by `smoothstab run`")
    p.add_argument("--quiet", action="store_true", help="no progress bars, only final lines")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override "
        + (example or "a setting by its dotted name, e.g. --set attribution.device=cuda")
        + " (repeatable)",
    )


def add_run_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``smoothstab run [CONFIG] [--out DIR] [--stages ...]``: the whole experiment."""
    p = subparsers.add_parser(
        "run",
        help="the whole experiment: train, attribute, evaluate, sanity, figures, bounds, report",
        description="Run every stage of an experiment into a run directory; finished work is "
        "skipped, so a killed run resumes when rerun. No CONFIG: the embedded quickstart.",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="an experiment TOML file or a preset name such as paper/imagenet_resnet50 "
        "(default: quickstart)",
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/<name>)")
    p.add_argument("--stages", nargs="+", metavar="STAGE", help="only these stages, in order")
    _common(p, run_dir=False)
    p.set_defaults(func=run_run)


def _experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """``args.config`` (a file or a preset) with ``args.overrides``; a file that is not UTF-8
    is one line naming it."""
    from smoothstab.experiments.config.load import load_config

    return load_config(args.config, args.overrides)


def run_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from smoothstab.experiments.config.parse import ConfigError
    from smoothstab.experiments.pipeline import STAGES, run_all

    cfg = _experiment_config(args)
    if args.quiet:
        cfg = replace(cfg, quiet=True)
    stages = args.stages or list(STAGES)
    for stage in stages:
        if stage not in STAGES:
            raise ConfigError(f"--stages: expected some of {', '.join(STAGES)}, got {stage!r}")
    # The name becomes a path only without --out: a plain name keeps the run inside runs/.
    out = args.out or Path("runs") / check_slug(cfg.name, "name")
    run_all(cfg, check_output_dir(out), stages)
    return 0


def _add_stage_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> None:
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    _common(p, run_dir=True)
    p.set_defaults(func=run_stage, stage=name)


def run_stage(args: argparse.Namespace) -> int:
    """One stage on an existing run directory, with its saved (resolved) config."""
    from dataclasses import replace

    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.config.parse import ConfigError
    from smoothstab.experiments.pipeline import run_all

    path = args.run_dir / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{args.run_dir}: expected a run directory with config.toml")
    cfg = load_config(path, args.overrides)
    if args.quiet:
        cfg = replace(cfg, quiet=True)
    run_all(cfg, args.run_dir, [args.stage])
    return 0


def add_attribute_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_stage_parser(
        subparsers, "attribute", "compute and measure the maps of every model, method and r"
    )


def add_evaluate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_stage_parser(subparsers, "evaluate", "metrics.parquet, table1.csv, recommendation.json")


def add_sanity_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_stage_parser(
        subparsers,
        "sanity",
        "sanity.csv: maps against randomised models (--set sanity.enabled=true)",
    )


def add_figures_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_stage_parser(subparsers, "figures", "the PNG figures of a run")


def add_bounds_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_stage_parser(subparsers, "bounds", "Theorems 5-6 and Prop. 7 beside the measured errors")


def add_report_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_stage_parser(subparsers, "report", "report.md and a self-contained report.html")


def add_plan_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``smoothstab plan [CONFIG] [--set ...] [--no-timing]``: a config's cost, before it runs."""
    p = subparsers.add_parser(
        "plan",
        help="what a config will cost: steps, model evaluations, storage, time estimate",
        description="Count a config's training steps, model evaluations of attribution, the files "
        "it stores and what one device holds, and estimate its time on this machine by timing a "
        "few real training steps and attribution chunks on random inputs (an extrapolation; no "
        "data is read). Runs nothing.",
    )
    p.add_argument("config", nargs="?", help="an experiment TOML file or a preset name")
    p.add_argument("--no-timing", action="store_true", help="counts only, no time estimate")
    p.add_argument(
        "--budget",
        default="1",  # read by run_plan: a bad value is one line there, not argparse's usage
        metavar="SECONDS",
        help="about how long each timed measurement may take (default 1)",
    )
    _common(p, run_dir=False)
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from smoothstab.experiments.config.parse import ConfigError
    from smoothstab.experiments.plan.make import make_plan
    from smoothstab.experiments.plan.text import format_plan

    cfg = _experiment_config(args)
    try:
        budget = float(args.budget)
    except ValueError:
        budget = math.nan
    if not 0 < budget < math.inf:
        raise ConfigError(f"--budget: expected a number of seconds > 0, got {args.budget!r}")
    plan = make_plan(cfg, timing=not args.no_timing, budget=budget)
    print(format_plan(plan, cfg), flush=True)
    return 0


def add_config_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``smoothstab config [CONFIG] [--set ...]``: every key with its value, type and meaning."""
    p = subparsers.add_parser(
        "config",
        help="every config key: its value in CONFIG, its type, default and meaning",
        description="Print CONFIG resolved (defaults and --set overrides applied) as a TOML file "
        "in which comments give every key's type, default and meaning; save it to start a config "
        "of your own. Runs nothing.",
    )
    p.add_argument(
        "config", nargs="?", help="an experiment TOML file or a preset name (default: quickstart)"
    )
    _common(p, run_dir=False)
    p.set_defaults(func=run_config)


def run_config(args: argparse.Namespace) -> int:
    from smoothstab.experiments.config.keys import format_config

    cfg = _experiment_config(args)
    sets = [f"--set {o}" for o in args.overrides]
    command = " ".join(["smoothstab config", args.config or "quickstart", *sets])
    print(format_config(cfg, command), end="", flush=True)
    return 0


SUBCOMMANDS = [
    add_config_parser,
    add_plan_parser,
    add_train_parser,
    add_attribute_parser,
    add_evaluate_parser,
    add_sanity_parser,
    add_figures_parser,
    add_report_parser,
    add_bounds_parser,
    add_run_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="smoothstab",
        description="Saliency maps under Gaussian smoothing: stability and fidelity.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    if signal.getsignal(signal.SIGINT) is _startup.interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from now
    args = build_parser().parse_args(argv)
    code = None
    try:
        code = _dispatch(args)
    finally:  # every rank under torchrun leaves its process group before the interpreter exits
        if "torch.distributed" in sys.modules:
            from smoothstab.experiments.models.distributed import leave

            leave(clean=code == 0)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line(args, warnings.showwarning)
        return _run(args)


def _warning_line(args: argparse.Namespace, shown: Callable) -> Callable:
    """Python's ``showwarning``, but a ``FutureWarning`` (an old key or name that still works)
    on one line, as the CLI's errors are."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, FutureWarning):
            return shown(message, category, filename, lineno, file, line)
        print(f"smoothstab {args.command}: warning: {message}", file=sys.stderr, flush=True)

    return show


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _fail(args, _startup.MESSAGE, INTERRUPTED)
    except ValueError as e:  # ConfigError, DamagedFile, bad data, devices, ...
        return _fail(args, _value_error(e))
    except FileNotFoundError as e:  # a stage run before the one that writes its input
        return _fail(args, _missing(args, e))
    except OSError as e:  # a full disk, a read-only place, a path that is a file, ...
        return _fail(args, _os_error(e))


USER_ERROR, INTERRUPTED = 2, 130


def _fail(args: argparse.Namespace, message: str, code: int = USER_ERROR) -> int:
    print(f"smoothstab {args.command}: error: {message}", file=sys.stderr, flush=True)
    return code


def one_line(e: BaseException) -> str:
    """An error's message on one line. An error raised in a DataLoader worker arrives with the
    worker's traceback in its message: its last line is the original message."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if len(lines) > 1 and "Original Traceback" in str(e):
        last = lines[-1]
        name, sep, rest = last.partition(": ")
        return rest if sep and name.isidentifier() else last
    return lines[0]


def _value_error(e: ValueError) -> str:
    """The error's line; a run file that cannot be read gets how to recompute it (the stage
    that wrote it), unless its message says already."""
    from smoothstab.experiments.io.files import DamagedFile
    from smoothstab.experiments.rundir.manifest import recompute

    if isinstance(e, DamagedFile) and e.advice is None:
        return f"{one_line(e)}; {recompute(e.path)}"
    return one_line(e)


def _missing(args: argparse.Namespace, e: FileNotFoundError) -> str:
    from smoothstab.experiments.rundir.manifest import rerun, stage_of

    name = e.filename or one_line(e)
    found = stage_of(name)
    if found is None:
        return f"{name} does not exist"
    return f"{name} does not exist; run the stages before this one first: {rerun(*found)}"


def _os_error(e: OSError) -> str:
    import errno

    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the device{where}; free some space and rerun the same command "
            "(finished work is kept)"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}; use another --out or fix the permissions"
    return f"{e.strerror or one_line(e)}{where}"
