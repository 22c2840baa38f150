"""Smooth-Grad and smoothed Grad-CAM on a timm ResNet and a Hugging Face ViT.

No weights can be downloaded where this page was made, so both models are built from their
configs with **random weights**: the maps show what the architecture and the image give, not
what a trained network looks at (the Sanity checks example shows why that matters). With
weights, the same lines work unchanged: ``timm.create_model("resnet18", pretrained=True)`` or
``ViTForImageClassification.from_pretrained("google/vit-base-patch16-224")``. The photos are
scikit-image's sample images.
"""

import timm
import torch
import torch.nn.functional as F
from skimage import data
from transformers import ViTConfig, ViTForImageClassification

import smoothstab as ss

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet's normalisation
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

photos = [data.chelsea(), data.astronaut(), data.coffee()]  # H x W x 3 uint8
image = torch.cat(
    [
        F.interpolate(torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255, size=(224, 224))
        for p in photos
    ]
)
x = (image - MEAN) / STD

# r = 0.15 of the input range, in input units: sigma = r * (x_max - x_min)
sigma = 0.15 * (((1 - MEAN) / STD).max() - ((0 - MEAN) / STD).min()).item()
print(f"sigma for r = 0.15 on ImageNet-normalised inputs: {sigma:.3f}")

torch.manual_seed(0)
models = {
    "timm resnet18": timm.create_model("resnet18", pretrained=False),
    "HF ViT (4 blocks)": ViTForImageClassification(
        ViTConfig(
            hidden_size=192,
            num_hidden_layers=4,
            num_attention_heads=3,
            intermediate_size=768,
            num_labels=1000,
        )
    ),
}
for title, model in models.items():
    model.eval()
    smoothgrad = ss.smooth(ss.grad, sigma=sigma, n_samples=16, seed=0)
    smoothcam = ss.smooth(ss.grad_cam, sigma=sigma, n_samples=16, seed=0)  # its layer: found
    stats = smoothgrad.stats(model, x)  # each image's predicted class
    print(f"{title}: {stats}")
    maps = {
        "Simple-Grad": ss.grad(model, x),
        "Smooth-Grad": stats.mean,
        "Grad-CAM": ss.grad_cam(model, x),
        "smoothed Grad-CAM": smoothcam(model, x),
    }
    fig = ss.plot.map_grid(maps, images=image, image_range=(0, 1))
    fig.suptitle(f"{title}, random weights", y=1.02)
    name = title.split()[1].replace("resnet18", "resnet").lower()
    fig.savefig(f"smooth_timm_{name}.png", dpi=70, bbox_inches="tight")
