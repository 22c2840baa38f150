"""Two checkpoints compared with ``smoothstab compare``: two of the quickstart's trained models
(``model_0.pt`` and ``model_1.pt`` of a finished run, the first argument; default
``runs/quickstart``), their architecture given as a Python factory, on images written to a
folder as a user's own images would be. ``compare`` writes its plan, runs the stages and a
report (``runs/compare/report.html``), whose first table says whether the two models' smoothed
maps agree more than their unsmoothed ones; the map grid of the two models is copied here.
"""

import pathlib
import shutil
import subprocess
import sys

import torch
from PIL import Image

from smoothstab.experiments.config.datasets import SHAPES_MEAN, SHAPES_STD

quickstart = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart").resolve()

# The architecture of the checkpoints: a module with a factory taking no arguments
pathlib.Path("quick_nets.py").write_text(
    "from smoothstab.experiments.config.datasets import SHAPE_CLASSES\n"
    "from smoothstab.experiments.models.architectures import build_model\n\n"
    "SHAPES = len(SHAPE_CLASSES)\n\n\n"
    "def small_cnn():\n"
    "    return build_model('small_cnn', num_classes=SHAPES, in_channels=3)\n"
)

# Twelve of the run's test images (or all, if fewer) as PNG files in a folder, their labels in a
# CSV (file,label)
# (the run keeps them normalised with the shapes' mean and std: undone here, given back below)
MEAN, STD = SHAPES_MEAN, SHAPES_STD
test = torch.load(quickstart / "test_images.pt", weights_only=True)
x, labels = test["x"], test["y"]
images = pathlib.Path("compare_images")
shutil.rmtree(images, ignore_errors=True)
images.mkdir()
lines = []
for i in range(min(12, len(x))):
    pixel = x[i] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    pixels = pixel.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(images / f"{i:03d}.png")
    lines.append(f"{i:03d}.png,{int(labels[i])}\n")
pathlib.Path("compare_labels.csv").write_text("".join(lines))

command = [
    sys.executable, "-m", "smoothstab", "compare",
    str(quickstart / "model_0.pt"), str(quickstart / "model_1.pt"),
    "--model", "python:quick_nets:small_cnn",
    "--images", str(images), "--labels", "compare_labels.csv",
    "--set", f"train.mean={list(MEAN)}", "--set", f"train.std={list(STD)}",
    "--out", "compare_run", "--quiet",
]  # fmt: skip
print("$ smoothstab compare model_0.pt model_1.pt --model python:quick_nets:small_cnn \\")
print("      --images compare_images --labels compare_labels.csv \\")
print("      --set train.mean=... --set train.std=...")
done = subprocess.run(command, capture_output=True, text=True, cwd=".")
said = (done.stdout + done.stderr).splitlines()
if done.returncode != 0:
    sys.exit("\n".join(said[-20:]))
print("\n".join(line for line in said if line.startswith(("compare:", "plan for"))))

# The report's first table: the change from r = 0 to the largest r, split into the maps' norm
# and the scale-free unit-map distance, with its interval (two models: over the images only)
report = pathlib.Path("compare_run/report.md").read_text().splitlines()
start = next(i for i, line in enumerate(report) if line.startswith("| method | n |"))
print("\n" + "\n".join(report[start : report.index("", start)]))
grid = sorted(pathlib.Path("compare_run/figures").glob("grid_grad_*.png"))[0]
shutil.copyfile(grid, "compare_checkpoints.png")
shutil.rmtree("compare_run")
shutil.rmtree(images)
pathlib.Path("quick_nets.py").unlink()
pathlib.Path("compare_labels.csv").unlink()
