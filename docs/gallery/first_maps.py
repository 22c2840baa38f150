"""Every method's map, unsmoothed and smoothed, on a small CNN trained here in half a minute.

The model is the quickstart's small CNN (four 3x3 convolutions, no BatchNorm) trained on 1,600 of
its generated 32x32 shapes with its recipe (10 epochs of SGD, batch 32, lr 0.03); the maps are
those of four test images, for the class the model predicts. Run from anywhere:
``python docs/gallery/first_maps.py`` writes ``first_maps.png`` into the working directory.
"""

import torch
import torch.nn.functional as F

import smoothstab as ss
from smoothstab.experiments.config.datasets import SHAPE_CLASSES, SHAPES_MEAN, SHAPES_STD
from smoothstab.experiments.models.architectures import SmallCNN
from smoothstab.experiments.models.shapes import generate_shapes

MEAN = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(SHAPES_STD).view(1, 3, 1, 1)


def shapes(n: int, part: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated shapes, normalised as the quickstart does (part 0 trains, 1 tests)."""
    images, labels = generate_shapes(n, seed=0, part=part)
    return (torch.from_numpy(images) - MEAN) / STD, torch.from_numpy(labels)


def train_small_cnn(seed: int = 0, n: int = 1600, epochs: int = 10) -> torch.nn.Module:
    """The quickstart's small CNN trained on ``n`` shapes with its recipe."""
    torch.manual_seed(seed)
    x, y = shapes(n, part=0)
    model = SmallCNN(in_channels=3, num_classes=len(SHAPE_CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        for batch in torch.randperm(n).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


if __name__ == "__main__":
    model = train_small_cnn()
    x_test, y_test = shapes(500, part=1)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy on 500 generated shapes: {accuracy:.3f}")

    x = x_test[:4]
    # r = 0.1 of the input range: the normalised shapes span 1 / 0.23 in every channel
    sigma = 0.1 / SHAPES_STD[0]
    methods = {
        "Simple-Grad": ss.grad,
        "Integrated-Gradients": ss.integrated_gradients,
        "Grad-CAM": ss.grad_cam,
        "Grad-CAM++": ss.grad_cam_pp,
    }
    maps, kinds = {}, []
    for name, method in methods.items():
        maps[name] = method(model, x)  # the predicted class, unsmoothed
        smoothed = ss.smooth(method, sigma=sigma, n_samples=32, seed=0)
        stats = smoothed.stats(model, x)  # the smoothed map and its Monte-Carlo error
        maps[f"{name}\nsmoothed, r = 0.1"] = stats.mean
        kinds += [name, name]
        errors = ", ".join(f"{e:.3f}" for e in stats.rel_se.tolist())
        print(f"{name}: relative standard errors of the smoothed maps {errors}")

    image = x * STD + MEAN  # shown in [0, 1]
    fig = ss.plot.map_grid(maps, images=image, methods=kinds, image_range=(0, 1))
    fig.savefig("first_maps.png", dpi=80, bbox_inches="tight")
