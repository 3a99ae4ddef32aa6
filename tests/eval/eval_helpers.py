"""Helpers of the eval tests."""
import numpy as np
from PIL import Image


def write_images(folder, n, size, seed, base=None, noise=0.0):
    """n smooth RGB PNGs (size × size); with ``base``, base images plus noise (a 'reconstruction')."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if base is None:
            coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
            img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)).astype(np.float64)
            img += rng.normal(0, 12, size=img.shape)
        else:
            img = base[i].astype(np.float64) + rng.normal(0, noise, size=base[i].shape)
        arr = np.clip(img, 0, 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:05d}.png")
        out.append(arr)
    return out
