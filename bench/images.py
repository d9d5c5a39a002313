"""Fixed input images, made deterministically from the sample photos in tests/data.

Same code, same Pillow and zlib: the same bytes on every run. Nothing random is unseeded.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from bench.harness import ROOT

DATA = ROOT / "tests" / "data"
SAMPLES = ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg")
NOISE_SIGMA = 6.0  # photo-like grain; keeps the PNG near the size a phone photo has


def sample(name: str = "coffee.png") -> Image.Image:
    with Image.open(DATA / name) as image:
        return image.convert("RGB")


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def resized(image: Image.Image, megapixels: float) -> Image.Image:
    """``image`` resized (same aspect ratio, Lanczos) to about ``megapixels``."""
    scale = math.sqrt(megapixels * 1_000_000 / (image.width * image.height))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def noisy(image: Image.Image, seed: int, sigma: float = NOISE_SIGMA) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.int16)
    grain = rng.normal(0.0, sigma, pixels.shape).round().astype(np.int16)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def upload_photos(count: int, target_bytes: int = 2_000_000) -> list[tuple[str, bytes]]:
    """``count`` PNGs of about ``target_bytes`` each: a sample photo, enlarged, with seeded
    grain (each file its own seed, so no two are alike)."""
    base = sample("coffee.png")
    probe = png_bytes(noisy(resized(base, 1.0), seed=0))
    megapixels = target_bytes / len(probe)  # PNG size grows about linearly with pixels
    photo = resized(base, megapixels)
    return [(f"photo-{i:02d}.png", png_bytes(noisy(photo, seed=1000 + i))) for i in range(count)]


def small_photos(count: int, megapixels: float = 0.25) -> list[tuple[str, bytes]]:
    """Small photos from the samples in turn, with seeded grain: quick to check and process."""
    out = []
    bases = [resized(sample(name), megapixels) for name in SAMPLES]
    for i in range(count):
        image = noisy(bases[i % len(bases)], seed=2000 + i, sigma=2.0)
        out.append((f"small-{i:03d}.png", png_bytes(image)))
    return out


def relief_input(folder: Path, megapixels: float) -> Path:
    """coffee.png resized to ``megapixels`` (no grain), saved as PNG for the Relief figure."""
    path = folder / f"coffee-{megapixels:g}mp.png"
    if not path.exists():
        path.write_bytes(png_bytes(resized(sample("coffee.png"), megapixels)))
    return path


def multipart(files: list[tuple[str, bytes]], field: str = "files") -> tuple[bytes, str]:
    """A multipart/form-data body (fixed boundary) and its Content-Type."""
    boundary = "image2model-bench-boundary-7f3a9c"
    parts = []
    for name, data in files:
        parts.append(
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
