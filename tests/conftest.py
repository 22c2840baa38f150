"""Fixtures and hooks of the whole suite; shared names live in ``helpers.py``.

``tiny_run`` is the tiny quickstart run, trained and run through every stage once per
test session (a fixture of the session): tests read its files, or copy its trained models
to run later stages again; none may change it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import TINY, ConvNet, make, run
from smoothstab.experiments.rundir.metrics_table import read_rows

# Nothing in the suite downloads: every fetch (torchvision weights, timm and Hugging Face hub
# models, CIFAR-10) is refused in one line, also in the CLI subprocesses the tests start. The
# download tests serve their files on 127.0.0.1 and lift this for themselves.
os.environ["SMOOTHSTAB_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def convnet():
    return make(ConvNet())


@pytest.fixture
def images():
    return torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def pytest_addoption(parser):
    parser.addoption(
        "--accept-golden",
        action="store_true",
        help="rewrite tests/golden/* from this run (say why in the commit)",
    )


# Fixtures that train models or run the pipeline end to end: a test that uses one belongs to the
# slow tier (``make test-fast`` runs ``-m "not slow"``). An unmarked user is a collection error,
# so a new test cannot drag minutes of training into the fast tier unnoticed.
SLOW_FIXTURES = {"tiny_run", "tiny_rows", "reference", "quickstart", "digests"}


def pytest_collection_modifyitems(config, items):
    unmarked = [
        f"{item.nodeid} (uses {', '.join(sorted(SLOW_FIXTURES & set(item.fixturenames)))})"
        for item in items
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("mark these tests @pytest.mark.slow: " + "; ".join(unmarked))


@pytest.fixture(autouse=True)
def _training_is_slow(request, monkeypatch):
    """A test outside the slow tier that takes an SGD step (trains a model) fails, naming it."""
    if request.node.get_closest_marker("slow") is not None:
        return
    from smoothstab.experiments.models.trainer import Trainer

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} trains a model: mark it @pytest.mark.slow")

    monkeypatch.setattr(Trainer, "sgd_step", refuse)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny run, made without ``--out`` from an empty working directory: so it also shows
    that a run lands in ``runs/<name>`` (the quickstart's name, here with overrides)."""
    cwd, old = tmp_path_factory.mktemp("tiny"), os.getcwd()
    os.chdir(cwd)
    try:
        assert run("run", "--quiet", *TINY) == 0
    finally:
        os.chdir(old)
    assert [p.name for p in cwd.iterdir()] == ["runs"]
    return cwd / "runs" / "quickstart"


@pytest.fixture(scope="session")
def tiny_rows(tiny_run) -> list[dict]:
    return read_rows(tiny_run / "metrics.parquet")
