"""Speed options: mixed precision (the one autocast of training and attribution) and
channels_last around the attribute stage's model calls.

``attribution.amp = "bf16"`` runs every forward and backward pass of the maps under
``torch.autocast`` in bfloat16 (convolutions and matrix products in bf16, reductions in float32);
noise draws, the Monte-Carlo sums and the saved maps stay in ``attribution.dtype``. The maps then
differ from float32 ones by bf16 rounding. On the small CNN of the tests: gradient maps
(Simple-Grad, IG) by about 12% of their norm unsmoothed and 4% smoothed (the input gradient goes
back through every bf16 layer; averaging over draws averages the rounding out), CAMs by under 1%
(``tests/experiments/models/test_accel.py`` states the bounds it checks).
``attribution.channels_last`` stores the model's 4-d weights in channels_last order, which steers
convolutions to their NHWC kernels (faster on GPUs with tensor cores and with oneDNN on CPUs); the
maps change only in the last bits. Neither option changes which noise is drawn or how the work is
cut.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import AttributionConfig
    from smoothstab.experiments.rundir.mapfile import MapFile


def prepare_model(model: nn.Module, attr: AttributionConfig) -> nn.Module:
    """``model`` with its 4-d weights in channels_last order when asked (in place)."""
    if attr.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # the amp keys' dtypes


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``amp``'s dtype (``train.amp``, ``attribution.amp``) on ``device``'s type;
    ``none``: nothing at all (the plain, bitwise float32 path)."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def in_dtype(out: MapFile, attr: AttributionConfig) -> MapFile:
    """``out`` with every floating-point tensor in ``attr.dtype`` (an unsmoothed map made under
    autocast comes out in bf16) and every tensor contiguous, so that saved maps look the same
    whatever the options (counts and flags keep their integer and bool types); without options,
    ``out`` itself."""
    if attr.amp == "none" and not attr.channels_last:
        return out
    dtype = getattr(torch, attr.dtype)
    cast = {}
    for f in dataclasses.fields(out):
        value = getattr(out, f.name)
        if isinstance(value, torch.Tensor):
            value = value.to(dtype) if value.is_floating_point() else value
            cast[f.name] = value.contiguous()
    return dataclasses.replace(out, **cast)
