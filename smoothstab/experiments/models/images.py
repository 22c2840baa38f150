"""A folder of test images of your own: the ``images`` data set (for given models, settings DR
and DA; ``smoothstab compare --images DIR``).

The images are the files at the folder's top (sorted by name) or, when there are none, those of
each subfolder (a class, in sorted order); each is resized so its shorter side is the data
set's ``image_size`` and centre-cropped to a square of it (no margin cut), then normalised.
Their labels come from a CSV of ``file,label`` lines (``[train] labels``), else the class
folders' indices, else there are none (-1: the run explains each image's predicted class).
Unreadable images are one line naming the file, as in every loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from smoothstab.experiments.config.datasets import IMAGES_LAYOUT, DatasetInfo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def image_files(root: Path) -> tuple[list[Path], list[str]]:
    """The images of ``root`` and the class of each (``""`` when flat): the image files at its
    top, sorted by name; or, when there are none, those of each subfolder (a class, in sorted
    order). One line when there is no folder or no image."""
    if not root.is_dir():
        raise ValueError(f"images: expected {IMAGES_LAYOUT}; {root} is not a folder")

    def images(folder: Path) -> list[Path]:
        return sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )

    top = images(root)
    if top:
        return top, [""] * len(top)
    files, classes = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = images(folder)
        files += found
        classes += [folder.name] * len(found)
    if not files:
        raise ValueError(
            f"images: expected {IMAGES_LAYOUT} ({', '.join(IMAGE_EXTENSIONS)}); {root} has none"
        )
    return files, classes


def read_labels(path: Path, files: list[Path], root: Path) -> list[int]:
    """Each file's label from a CSV of ``file,label`` lines (an optional header line; a file
    named relative to ``root``); one line naming the first problem."""
    import csv

    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"train.labels: cannot read {path} ({e})") from None
    table: dict[str, int] = {}
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        cells = [c.strip() for c in row]
        if len(cells) != 2 or not cells[1].lstrip("-").isdigit() or int(cells[1]) < 0:
            if n == 1 and len(cells) == 2 and not cells[1].lstrip("-").isdigit():
                continue  # a header
            raise ValueError(
                f"train.labels: {path} line {n}: expected file,label with a class index >= 0, "
                f"got {','.join(cells)!r}"
            )
        table[Path(cells[0]).as_posix()] = int(cells[1])
    out = []
    for f in files:
        name = f.relative_to(root).as_posix()
        if name not in table:
            raise ValueError(f"train.labels: {path} gives no label for {name}")
        out.append(table[name])
    return out


class ImageFiles(Dataset):
    """A folder of test images (:func:`image_files`) as ``(x [C, H, W] normalised, label)``:
    resized so the shorter side is ``image_size`` and centre-cropped to a square of it; labels
    from ``labels`` (a CSV, :func:`read_labels`), else the class folders' indices, else -1 (no
    label). ``classes``: the class folders, or the labels' indices."""

    def __init__(self, root: Path, info: DatasetInfo, labels: str | Path | None = None) -> None:
        from torchvision import transforms as T

        self.files, folders = image_files(root)
        names = sorted(set(folders) - {""})
        if labels is not None:
            self.targets = read_labels(Path(labels), self.files, root)
            self.classes = [str(i) for i in range(max(self.targets) + 1)]
        elif names:
            self.targets, self.classes = [names.index(c) for c in folders], names
        else:
            self.targets, self.classes = [-1] * len(self.files), []
        size = info.image_size
        self.mode = "L" if info.in_channels == 1 else "RGB"
        self.transform = T.Compose(
            [T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(info.mean, info.std)]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_image(str(self.files[i]), self.mode)), self.targets[i]


def load_image(path: str, mode: str = "RGB") -> Any:
    """torchvision's PIL loader (RGB, or ``L`` for one channel), with an unreadable image as
    one line naming the file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert(mode)
    except Exception as e:  # noqa: BLE001 - not an image, truncated, a decompression bomb
        why = type(e).__name__  # its message repeats the path
        raise ValueError(f"{path}: not a readable image ({why}); remove or replace it") from None


def describe_images(root: Path) -> tuple[int, tuple[int, int] | None, bool, bool]:
    """What a folder of images is, from the files' headers (none is decoded): ``(count, (width,
    height) when they all share it else None, all grey, in class folders)``."""
    from PIL import Image

    files, classes = image_files(root)
    sizes, grey = set(), True
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.add(im.size)
                grey = grey and im.mode in ("1", "L", "I", "I;16", "F")
        except Exception as e:  # noqa: BLE001 - not an image, truncated: one line naming it
            raise ValueError(
                f"{f}: not a readable image ({type(e).__name__}); remove or replace it"
            ) from None
    return len(files), sizes.pop() if len(sizes) == 1 else None, grey, any(classes)
