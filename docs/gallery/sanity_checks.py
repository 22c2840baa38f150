"""The model-randomisation check (Adebayo et al. 2018) of Simple-Grad and Grad-CAM, unsmoothed and
smoothed: does the map change when the model's layers are re-initialised, from the logits down?

A map that stays the same when the weights it explains are replaced by random ones explains the
image, not the model. The model is the small CNN of the first example (the quickstart's, trained
here on 1,600 generated shapes); ``first_maps.py`` beside this file trains it.
"""

import functools

from first_maps import MEAN, SHAPES_STD, STD, shapes, train_small_cnn

import smoothstab as ss

model = train_small_cnn()
x, _ = shapes(500, part=1)
x = x[:8]
sigmas = [0.0, 0.1 / SHAPES_STD[0]]  # r = 0 and r = 0.1

for name, method in {"Simple-Grad": ss.grad, "Grad-CAM": ss.grad_cam}.items():
    if name == "Grad-CAM":  # a copy's layer is found by name: give it
        method = functools.partial(ss.grad_cam, layer="features.3")
    result = ss.sanity(method, model, x, sigmas=sigmas, n_samples=16)
    print(f"{name}: SSIM of the trained model's map to each copy's (mean over 8 images)")
    print("  copy (randomised from this layer up)  " + "  ".join(f"r={r:<5}" for r in (0, 0.1)))
    for i, copy in enumerate(result.names):
        ssim = result.ssim[:, i].mean(dim=1)
        print(f"  {copy:<38}" + "  ".join(f"{s:7.3f}" for s in ssim.tolist()))

# The maps themselves: the trained model and its cascade of randomised copies, Simple-Grad
copies = ss.randomize(model)
maps = {"trained": ss.grad(model, x[:3])}
target = model(x[:3]).argmax(1)  # the trained model's class, kept for every copy
for copy_name, copy in copies:
    maps[f"from {copy_name}"] = ss.grad(copy, x[:3], target)
# each map on its own scale, as Adebayo et al. show them: the structure, not the strength
fig = ss.plot.map_grid(maps, images=x[:3] * STD + MEAN, image_range=(0, 1), scale="each")
fig.savefig("sanity_checks.png", dpi=80, bbox_inches="tight")
