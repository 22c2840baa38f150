"""The ``smoothstab`` command: ``smoothstab <subcommand> ...``.

Each subcommand is one ``add_<name>_parser(subparsers)`` function that registers its options
and its handler (``args.func(args) -> int``); :data:`SUBCOMMANDS` lists them in help order.
Errors the user can fix -- a bad key or value, a missing or damaged file, bad data, a device
this machine lacks, an output path that cannot be written, a full disk -- are one line on stderr
and exit 2; Ctrl-C is one line and exit 130 (rerun the same command to resume). Anything else is
a bug and keeps its traceback.

Long (about 600 lines) because each subcommand's parser sits beside its handler, and
``compare``'s handler beside the paragraph it prints above its plan; what they do is elsewhere
(the config, the plan, the pipeline).
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
    with locked(out) if main_rank else nullcontext(), _train_code(args.config):
        checked = main_rank and _check_train_files(out)
        train_run(config, out)
        if checked:  # what the manifest says of the train stage is the truth again
            from smoothstab.experiments.rundir import manifest

            manifest.record(out, "train")
    return 0


def _check_train_files(out: Path) -> bool:
    """In a run directory with a manifest, verify the train stage's recorded files before
    ``smoothstab train`` trusts them: a damaged one is deleted (one line says so) and trained
    again, as ``smoothstab run`` does. ``False`` where there is no manifest (nothing recorded)."""
    from smoothstab.experiments.pipeline import STAGES
    from smoothstab.experiments.rundir import manifest

    if not (out / manifest.MANIFEST).is_file():
        return False
    manifest.check(out, "train", list(STAGES))
    return True


def _train_code(source: str | None):
    """Where ``smoothstab train``'s ``python:`` model is looked up
    (:func:`~smoothstab.experiments.models.external.model_code`): a whole config's
    ``models.code_dir`` and ``models.trust_remote_code``, else the config file's folder."""
    from smoothstab.experiments.config.load import PRESETS, config_path, load_config
    from smoothstab.experiments.config.parse import load_toml
    from smoothstab.experiments.models.external import model_code

    path = config_path(source)
    if set(load_toml(path)) - {"train"}:
        models = load_config(path).models
        return model_code(models.code_dir, models.trust_remote_code)
    preset = path.resolve().is_relative_to(Path(str(PRESETS)).resolve())
    return model_code(None if preset else path.resolve().parent)


def train_config(source: str | None) -> TrainConfig:
    """The TrainConfig of a preset name or a TOML file (default: the quickstart's). A file with
    other tables than ``[train]`` is checked whole, as ``smoothstab run`` would."""
    from smoothstab.experiments.config.load import config_from_table, config_path
    from smoothstab.experiments.config.parse import dataclass_from_dict, load_toml
    from smoothstab.experiments.config.tables import TrainConfig

    path = config_path(source)
    tables = load_toml(path)
    if set(tables) - {"train"}:
        return config_from_table(tables, path).train
    return dataclass_from_dict(TrainConfig, tables.get("train", {}), where="train")


def _common(p: argparse.ArgumentParser, *, run_dir: bool, example: str = "") -> None:
    """``[RUN_DIR]``, ``--quiet`` and the repeatable ``--set KEY=VALUE``."""
    if run_dir:
        p.add_argument("run_dir", type=Path, help="a run directory made by `smoothstab run`")
    p.add_argument("--quiet", action="store_true", help="no progress bars, only final lines")
    p.add_argument(
        "--offline",
        action="store_true",
        help="download nothing: a weight or data file not in its cache is one line naming the "
        "file to place (also SMOOTHSTAB_OFFLINE=1, or HF_HUB_OFFLINE=1)",
    )
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
    if not (out / "config.toml").exists() and {"train", "attribute"} & set(stages):
        warn_if_long(cfg)
    run_all(cfg, check_output_dir(out), stages)
    return 0


PRE_RUN_BUDGET = 0.05  # seconds per timed measurement of the check before a new run (~1 s)


def warn_if_long(cfg: ExperimentConfig, plan: object = None) -> None:
    """Before a new run: its plan, its attribution timed briefly here (its training, which
    its own progress bar times, is not), and one line on stderr when it is over the threshold
    (:mod:`~smoothstab.experiments.plan.budget`). The plan builds the models as the run will,
    so one that cannot be built fails now, not after training."""
    import os

    from smoothstab.experiments.io.progress import say
    from smoothstab.experiments.plan.budget import over_threshold
    from smoothstab.experiments.plan.make import make_plan

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return  # under torchrun every rank would time the same plan
    if plan is None:
        try:
            plan = make_plan(
                cfg, timing=True, budget=PRE_RUN_BUDGET, train_timing=False, files=False
            )
        except (ValueError, OSError, KeyboardInterrupt):
            raise  # the config's problems (and Ctrl-C): said now, before anything runs
        except Exception as e:  # noqa: BLE001 - the estimate's own failure stops no run
            say(f"plan: no time estimate for this run ({type(e).__name__}: {one_line(e)})")
            return
    line = over_threshold(cfg, plan)
    if line is not None:
        say(line)


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
        "data is read). Trains and writes nothing. The timing builds the config's models, so it "
        "imports and calls a python: model factory (code, as in run); with --no-timing plan runs "
        "none of a config's code.",
    )
    p.add_argument("config", nargs="?", help="an experiment TOML file or a preset name")
    p.add_argument(
        "--no-timing",
        action="store_true",
        help="counts only, no time estimate: builds no model, runs no python: factory",
    )
    p.add_argument(
        "--budget",
        default="1",  # read by run_plan: a bad value is one line there, not argparse's usage
        metavar="SECONDS",
        help="about how long each timed measurement may take (default 1)",
    )
    p.add_argument(
        "--pilot",
        type=Path,
        metavar="RUN_DIR",
        help="a finished run directory: plan how many models per size and test images give each "
        "method's change an interval of --target-halfwidth, from its variance components, and "
        "plan that run",
    )
    p.add_argument(
        "--target-halfwidth",
        metavar="X",
        help="with --pilot: the 95%% interval's half-width, as a fraction of the unit-map "
        "distance at r = 0 (default: the config's evaluation.target_halfwidth, 0.02)",
    )
    _common(p, run_dir=False)
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from smoothstab.experiments.config.parse import ConfigError
    from smoothstab.experiments.plan.budget import over_threshold
    from smoothstab.experiments.plan.make import make_plan
    from smoothstab.experiments.plan.text import format_plan

    cfg = _experiment_config(args)
    try:
        budget = float(args.budget)
    except ValueError:
        budget = math.nan
    if not 0 < budget < math.inf:
        raise ConfigError(f"--budget: expected a number of seconds > 0, got {args.budget!r}")
    if args.pilot is not None:
        from smoothstab.experiments.plan.pilot import pilot_plan
        from smoothstab.experiments.plan.text import format_pilot

        target = _target(args.target_halfwidth, cfg.evaluation.target_halfwidth)
        pp = pilot_plan(cfg, args.pilot, target)
        print(format_pilot(pp), "", sep="\n", flush=True)
        if pp.config is None:
            return 0
        cfg = pp.config
    elif args.target_halfwidth is not None:
        raise ConfigError("--target-halfwidth: needs --pilot RUN_DIR, the run it plans from")
    plan = make_plan(cfg, timing=not args.no_timing, budget=budget)  # in the config's code folder
    print(format_plan(plan, cfg), flush=True)
    line = over_threshold(cfg, plan)
    if line is not None:
        print(line, flush=True)
    return 0


def add_compare_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``smoothstab compare CKPT CKPT ... --model SPEC --images DIR``: checkpoints to a report."""
    p = subparsers.add_parser(
        "compare",
        help="are the saliency maps of your checkpoints stable, and does smoothing help? "
        "checkpoints and images in, a report out",
        description="Compare the saliency maps of two or more checkpoints on a folder of "
        "images (or a data set), unsmoothed and smoothed, and write a report: the config "
        "own_checkpoints built from these arguments (16 noise draws, 4 noise levels, at most 16 "
        "images), its plan printed before it starts, then the stages of `smoothstab run`. "
        "A checkpoint is a weights file or a torchvision weight name of --model, timm:NAME "
        "(timm's pretrained weights), hf:ORG/NAME or hf:FOLDER. A killed run resumes when rerun.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="two or more")
    p.add_argument(
        "--model",
        metavar="SPEC",
        help="the architecture of weights files: python:module:factory (your module, "
        "e.g. mynets.py in the working directory), a torchvision name such as resnet50, or "
        "timm:NAME",
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="a folder of images (DIR/<image>, or "
        "DIR/<class>/<image> with labels from the class folders)",
    )
    data.add_argument("--dataset", metavar="NAME", help="a data set instead: cifar10, ...")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="the images' labels, file,label lines "
        "(without: each image's predicted class is explained, or its class folder's)",
    )
    p.add_argument("--cam-layer", metavar="NAME", help="the Grad-CAM layer's dotted name")
    p.add_argument("--name", default="compare", help="the run's name (default: compare)")
    p.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: runs/<name>)")
    _common(p, run_dir=False, example="a setting, e.g. --set attribution.n_samples=32")
    p.set_defaults(func=run_compare)


COMPARE_BUDGET = 0.1  # seconds per timed measurement of compare's plan (a few seconds in all)


def run_compare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch

    from smoothstab.experiments.config.compare import Images, compare_config, compare_table
    from smoothstab.experiments.config.parse import ConfigError
    from smoothstab.experiments.models.images import describe_images
    from smoothstab.experiments.pipeline import STAGES, run_all
    from smoothstab.experiments.plan.make import make_plan
    from smoothstab.experiments.plan.text import format_plan

    images = None
    if args.images is not None:
        if args.labels is not None and not args.labels.is_file():
            raise ConfigError(f"--labels: expected a CSV file of file,label lines, {args.labels} "
                              "is not a file")  # fmt: skip
        count, size, grey, folders = describe_images(args.images)
        labels = None if args.labels is None else str(args.labels)
        images = Images(str(args.images), count, size, grey, folders, labels)
    elif args.labels is not None:
        raise ConfigError("--labels: only with --images (a data set carries its labels)")
    table = compare_table(
        args.checkpoints,
        model=args.model,
        images=images,
        dataset=args.dataset,
        cam_layer=args.cam_layer,
        name=check_slug(args.name, "--name"),
        cuda=torch.cuda.is_available(),
    )
    cfg = compare_config(table, args.overrides)
    if args.quiet:
        cfg = replace(cfg, quiet=True)
    out = args.out or Path("runs") / cfg.name
    plan = make_plan(cfg, timing=True, budget=COMPARE_BUDGET)
    print(_compare_header(cfg, images), flush=True)
    print(format_plan(plan, cfg), flush=True)
    warn_if_long(cfg, plan)
    print(f"\nto run it again: smoothstab run {out / 'config.toml'}\n", flush=True)
    run_all(cfg, check_output_dir(out), list(STAGES))
    return 0


def _compare_header(cfg: ExperimentConfig, images: object) -> str:
    """What ``compare`` chose, in a paragraph above its plan."""
    a, t = cfg.attribution, cfg.train
    models = ", ".join(s.label or s.name for s in cfg.models.specs)
    arch = ", ".join(dict.fromkeys(s.name for s in cfg.models.specs))
    if images is not None:
        size = t.image_size or 224
        data = (
            f"{a.n_images} of the {images.count} images in {t.root}, resized to {size}x{size}, "
            f"{'grey' if (t.channels or 3) == 1 else 'RGB'}"
        )
    else:
        data = f"{a.n_images} {t.dataset} test images"
    target = "their labels" if a.target == "label" else "each image's predicted class"
    levels = ", ".join(f"{r:g}" for r in sorted(set(a.stability_r) | set(a.fidelity_r)))
    return (
        f"compare: {len(cfg.models.specs)} models ({cfg.models.setting}: {arch}): {models}\n"
        f"  data: {data}; explained: {target}\n"
        f"  {a.n_samples} noise draws per map at r = {levels} (Table 1 at r = {a.table_r:g}), "
        f"IG sampler {a.ig_sampler}; change any with --set KEY=VALUE (smoothstab config "
        "own_checkpoints lists them)\n"
    )


def _target(text: str | None, default: float) -> float:
    """``--target-halfwidth``'s value, a number in (0, 10) (the config's when not given)."""
    if text is None:
        return default
    from smoothstab.experiments.config.parse import ConfigError

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 10:
        raise ConfigError(
            f"--target-halfwidth: expected a fraction of the baseline in (0, 10), e.g. 0.05, got "
            f"{text!r}"
        )
    return value


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
    add_compare_parser,
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
    if getattr(args, "offline", False):
        from smoothstab.experiments.models.download import go_offline

        go_offline()
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
