"""The ``smoothstab`` command: ``smoothstab <subcommand> ...``.

Each subcommand is one ``add_<name>_parser(subparsers)`` function that registers its options
and its handler (``args.func(args) -> int``); :data:`SUBCOMMANDS` lists them in help order.
Errors the user can fix (a missing file, a bad key or value) are one line on stderr: exit 2
for config problems, 1 for the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def add_train_parser(subparsers) -> None:
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
        help="a TOML file with a [train] table, or a preset name "
        "(quickstart, cifar10_resnet34, imagenet_resnet50); default: quickstart",
    )
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars, only final lines")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a [train] setting, e.g. --set epochs=5 (repeatable)",
    )
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from smoothstab.experiments.config import apply_overrides
    from smoothstab.experiments.train import train_run

    config = apply_overrides(train_config(args.config), args.overrides)
    if args.quiet:
        config = replace(config, quiet=True)
    train_run(config, args.out)
    return 0


def train_config(source: str | None):
    """The TrainConfig of a preset name or a TOML file's ``[train]`` table (default: quickstart)."""
    from smoothstab.experiments.config import ConfigError, dataclass_from_dict, load_toml
    from smoothstab.experiments.train import PRESETS, TrainConfig

    if source is None:
        return PRESETS["quickstart"]
    if source in PRESETS:
        return PRESETS[source]
    if not source.endswith(".toml") and not Path(source).exists():
        raise ConfigError(
            f"config: expected a TOML file or a preset ({', '.join(PRESETS)}), got {source!r}"
        )
    tables = load_toml(source)
    unknown = sorted(set(tables) - {"train"})
    if unknown:
        raise ConfigError(f"{source}: unknown table [{unknown[0]}]; expected [train]")
    return dataclass_from_dict(TrainConfig, tables.get("train", {}), where="train")


SUBCOMMANDS = [add_train_parser]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="smoothstab",
        description="Saliency maps under Gaussian smoothing: stability and fidelity.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    from smoothstab.experiments.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as e:
        print(f"smoothstab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"smoothstab {args.command}: error: {e}", file=sys.stderr)
        return 1
