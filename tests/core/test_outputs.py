"""Model outputs: every method and every smoothing reads the logits by one rule
(:func:`smoothstab.methods.output_logits`): a tensor, ``.logits``, a mapping's ``"logits"``, or
a tuple/list's first element. Anything else is one line naming the type."""

from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict, namedtuple

import pytest
import torch
from torch import nn

import smoothstab as ss
from helpers import ConvNet, make
from smoothstab.methods import output_logits

cam = functools.partial(ss.grad_cam, layer="inner.features.3")
ig = functools.partial(ss.integrated_gradients, steps=3)
METHODS = {
    "grad": ss.grad,
    "ig": ig,
    "gradcam": cam,
    "gradcampp": functools.partial(ss.grad_cam_pp, layer="inner.features.3"),
    "smooth_grad": ss.smooth(ss.grad, 0.3, 4, seed=0),
    "smooth_gradcam": ss.smooth(cam, 0.3, 4, seed=0),
    "smooth_ig_joint": ss.smooth(ig, 0.3, 4, sampler="joint", seed=0),
    "smooth_ig_tol": ss.smooth(ig, 0.3, tol=0.5, min_samples=4, max_samples=8, seed=0),
}


@dataclasses.dataclass
class FakeModelOutput:  # what a Hugging Face ModelOutput looks like to us: .logits
    logits: torch.Tensor
    hidden_states: tuple | None = None


Pair = namedtuple("Pair", "logits aux")

WRAPS = {
    "tensor": lambda y: y,
    "attribute": lambda y: FakeModelOutput(y, (y,)),
    "mapping": lambda y: {"features": y * 2, "logits": y},
    "ordered_mapping": lambda y: OrderedDict(loss=None, logits=y),
    "tuple": lambda y: (y, y.sum()),
    "namedtuple": lambda y: Pair(y, y * 3),
    "list": lambda y: [y],
}


class Wrapped(nn.Module):
    """``inner``'s logits handed back in another container."""

    def __init__(self, inner: nn.Module, wrap) -> None:
        super().__init__()
        self.inner, self.wrap = inner, wrap

    def forward(self, x):
        return self.wrap(self.inner(x))


@pytest.mark.parametrize("kind", list(WRAPS))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_reads_every_output_form(name, kind, images):
    inner = make(ConvNet())
    plain = METHODS[name](Wrapped(inner, WRAPS["tensor"]), images, None)
    got = METHODS[name](Wrapped(inner, WRAPS[kind]), images, None)
    torch.testing.assert_close(got, plain, rtol=0, atol=0)


BAD = {
    "string": (lambda y: "logits", "got str"),
    "mapping without logits": (lambda y: {"scores": y}, "got dict holding no logits"),
    "empty tuple": (lambda y: (), "got tuple holding no logits"),
    "tuple of a string": (lambda y: ("a", y), "got tuple holding str"),
    "none": (lambda y: None, "got NoneType"),
    "non-tensor .logits": (lambda y: FakeModelOutput([1.0]), "got FakeModelOutput"),
    "3-D logits": (
        lambda y: (y[:, :, None],),
        r"expected logits \[B, K\] with B=3, got \(3, 5, 1\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("name", ["grad", "gradcam", "smooth_grad"])
def test_other_outputs_are_one_line_naming_the_type(name, case, images):
    wrap, match = BAD[case]
    with pytest.raises(ValueError, match="model output: expected") as err:
        METHODS[name](Wrapped(make(ConvNet()), wrap), images, 0)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=match):
        output_logits(wrap(torch.zeros(3, 5)), 3)


def test_attribute_wins_over_mapping_and_tuple():
    """A Hugging Face ModelOutput is both a mapping and has .logits: the attribute is read."""

    class Both(OrderedDict):
        @property
        def logits(self):
            return torch.ones(2, 3)

    assert output_logits(Both(logits=torch.zeros(2, 3)), 2).sum() == 6
