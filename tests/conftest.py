"""Small models shared by the tests. Everything is tiny so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

# The tiny quickstart the end-to-end tests run (as `--set` values): 2 small CNNs on 400 shapes
# each, 2 epochs at lr 0.05 (pinned, so that tuning the quickstart's recipe moves no test), 4
# images, 6 noise draws, 4 IG points, r in {0, 0.1, 0.15, 0.2, 0.4}.
TINY_SETTINGS = [
    "train.epochs=2",
    "train.lr=0.05",
    "train.parts=2",
    "train.part_size=400",
    "attribution.n_images=4",
    "attribution.n_samples=6",
    "attribution.ig_steps=4",
    "attribution.stability_r=[0, 0.2]",
    "attribution.fidelity_r=[0, 0.1, 0.4]",
    "attribution.image_batch=2",
    "evaluation.topk=20",
    # what the quickstart preset chose for its speed, kept as before so the tests and the golden
    # numbers still cover the nested sampler, the paper's Table-1 level, 256-row calls and
    # training in the default memory format
    "train.channels_last=false",
    "attribution.channels_last=false",
    "attribution.ig_sampler=nested",
    "attribution.table_r=0.15",
    "attribution.batch_size=256",
]

# Headless Chromium for the tests that open pages in a browser (the report, the docs site); where
# none is found they are skipped with NO_BROWSER.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)
NO_BROWSER = "no Chromium (.ci/run installs Debian's chromium)"

# A Hugging Face ViT small enough for a test (32 px, 8 px patches, one block): the tests that
# build one from a config with random weights share it.
TINY_HF_VIT = dict(
    image_size=32,
    patch_size=8,
    num_hidden_layers=1,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
)


class ConvNet(nn.Module):
    """conv-ReLU-conv-ReLU-GAP-linear; ``features.3`` keeps the input's spatial size."""

    def __init__(self, in_channels: int = 3, num_classes: int = 5, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class StridedNet(nn.Module):
    """Like ConvNet but the CAM layer ``body.2`` is at half resolution, so maps are upsampled."""

    def __init__(self, in_channels: int = 3, num_classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
        )

    def forward(self, x):
        return self.head(self.body(x))


def make(model: nn.Module, dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    return model.to(dtype).eval()


@pytest.fixture
def convnet():
    return make(ConvNet())


@pytest.fixture
def images():
    return torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def pytest_addoption(parser):
    parser.addoption(
        "--accept-golden",
        action="store_true",
        help="rewrite tests/golden/* from this run (say why in the commit)",
    )


# Fixtures that train models or run the pipeline end to end: a test that uses one belongs to the
# slow tier (``make test-fast`` runs ``-m "not slow"``). An unmarked user is a collection error,
# so a new test cannot drag minutes of training into the fast tier unnoticed.
SLOW_FIXTURES = {"tiny_run", "tiny_rows", "quickstart", "digests"}


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
