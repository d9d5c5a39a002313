"""Relief: an offline generator that turns one photo into a textured bas-relief (GLB + PNG).

Pipeline: load the photo, separate the subject from its background, read a height field from
luminance, build a watertight grid mesh sized to the face limit, texture it with the photo and
render a shaded preview. Pure numpy + Pillow + trimesh: no network, no Django, deterministic.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image, ImageOps

from apps.jobs.providers.base import (
    GenerationCanceled,
    GenerationError,
    Generator,
    Output,
    Param,
    RunContext,
)

WORK_SIZE = 2048  # long side kept after loading: the texture never needs more
ANALYSIS_SIZE = 384  # background separation runs once at this size, then is resampled
PREVIEW_SIZE = 512
MAX_GRID = 2048  # long side cap of the mesh grid, bounds memory for tiny subjects
ALPHA_MIN_FRACTION = 0.005  # a few antialiased corner pixels do not make a cut-out
BORDER_UNIFORM_FRACTION = 0.85  # share of the border ring that must match its median colour
MIN_SUBJECT_FRACTION = 0.05
HEIGHT_FLOOR = 0.05  # keeps the darkest cells above z=0 so base_thickness=0 stays a solid
AMBIENT = 0.35
LIGHT = np.array([-1.0, 1.0, 2.0]) / math.sqrt(6.0)  # upper left, towards the viewer
REC709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
BACKGROUNDS = ("auto", "alpha", "border", "none")
Mask = np.ndarray


class ReliefGenerator(Generator):
    id = "relief"
    name = "Relief (offline)"
    description = (
        "Turns a photo into a textured bas-relief whose height follows the image brightness, "
        "computed locally without any external service."
    )
    formats = ("glb",)
    params = (
        Param("face_limit", "integer", 20000, "Maximum number of triangles.", 500, 200000),
        Param("relief_depth", "number", 0.12, "Relief height, fraction of width.", 0.01, 0.5),
        Param("base_thickness", "number", 0.04, "Base thickness, fraction of width.", 0.0, 0.3),
        Param("invert", "boolean", False, "Raise dark areas instead of bright ones."),
        Param("smoothing", "number", 1.5, "Height field blur, in mesh cells.", 0.0, 10.0),
        Param("background", "string", "auto", "How to cut out the subject.", choices=BACKGROUNDS),
        Param("background_tolerance", "integer", 40, "Colour distance to the border.", 0, 255),
        Param("texture_size", "integer", 1024, "Texture long side, in pixels.", 256, 2048),
    )

    def run(self, image_path: Path, params: dict[str, Any], context: RunContext) -> list[Output]:
        # Cleaning again is idempotent and fills defaults when a caller passes a partial dict.
        p = self.clean_params(params)
        image = _load(Path(image_path))
        _step(context, 10, "analyzing", "Separating the subject from the background")
        keep_full = _segment(_fit(image, ANALYSIS_SIZE), p["background"], p["background_tolerance"])
        _step(context, 40, "meshing", "Building the relief mesh")
        keep = _choose_grid(keep_full, image.size, p["face_limit"])
        rgb = np.asarray(image.convert("RGB").resize(keep.shape[::-1], Image.Resampling.BILINEAR))
        heights = _heights(rgb, keep, p["smoothing"], p["invert"])
        cell_z = p["relief_depth"] * (HEIGHT_FLOOR + (1.0 - HEIGHT_FLOOR) * heights)
        vertices, faces, uv, scale = _mesh_arrays(keep, cell_z, p["base_thickness"], image.size)
        _step(context, 80, "exporting", "Writing the GLB model and the preview")
        texture = _fit(image, p["texture_size"]).convert("RGB")
        model = _export_glb(vertices, faces, uv, texture)
        preview = _preview(image, cell_z, keep, scale)
        _step(context, 100, "done", f"Relief with {len(faces)} faces")
        return [
            Output(kind="model", format="glb", content_type="model/gltf-binary", data=model),
            Output(kind="preview", format="png", content_type="image/png", data=preview),
        ]


def _step(context: RunContext, percent: int, stage: str, message: str) -> None:
    # Cancel is checked before announcing a stage so a canceled job never reports progress.
    if context.cancel_requested():
        raise GenerationCanceled()
    context.progress(percent, stage, message)


# --- loading ---------------------------------------------------------------------------------


def _load(path: Path) -> Image.Image:
    try:
        with Image.open(path) as source:
            # JPEG can decode straight at a reduced scale: much faster for phone photos.
            source.draft("RGB", (WORK_SIZE, WORK_SIZE))
            source.load()
            image = _to_8bit(ImageOps.exif_transpose(source))
            # Shrink first when we can: resizing 3 channels of a big photo beats 4. Palette and
            # tRNS images convert first since they would otherwise resize as nearest neighbour.
            if image.mode not in ("RGB", "RGBA") or "transparency" in image.info:
                image = image.convert("RGBA")
            image = _fit(image, WORK_SIZE).convert("RGBA")
    except FileNotFoundError:
        raise GenerationError("IMAGE_MISSING", "The image file could not be found.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise GenerationError(
            "IMAGE_UNREADABLE", "The file could not be read as an image (PNG, JPEG, WebP...)."
        ) from None
    if min(image.size) < 2:
        raise GenerationError("IMAGE_TOO_SMALL", "The image must be at least 2x2 pixels.")
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    # Pillow clips 16-bit greyscale to 255 when converting to RGB; rescale it instead.
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if values.max() > 255:
        values = values / 257.0
    elif image.mode == "F" and values.max() <= 1.0:  # float images are usually 0..1
        values = values * 255.0
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def _fit(image: Image.Image, size: int) -> Image.Image:
    """A copy no larger than ``size`` on its long side (never upscaled)."""
    scale = size / max(image.size)
    if scale >= 1.0:
        return image.copy()
    dims = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap lets Pillow shrink by an integer factor first (cheap box reduce).
    return image.resize(dims, Image.Resampling.LANCZOS, reducing_gap=3.0)


# --- background separation -------------------------------------------------------------------


def _segment(small: Image.Image, mode: str, tolerance: int) -> Mask:
    """Subject mask at analysis resolution (True = part of the relief)."""
    rgba = np.asarray(small)
    alpha_keep = rgba[..., 3] >= 128
    full = np.ones(alpha_keep.shape, dtype=bool)
    if mode == "none":
        return full
    if mode == "alpha" or (mode == "auto" and 1 - alpha_keep.mean() >= ALPHA_MIN_FRACTION):
        return _require_subject(alpha_keep)
    keep = _border_mask(rgba[..., :3], tolerance, strict=mode == "border")
    if keep is None:
        return full
    return _require_subject(keep)


def _require_subject(keep: Mask) -> Mask:
    if not keep.any():
        raise GenerationError(
            "NO_SUBJECT", "No subject was left after removing the background; try background=none."
        )
    return keep


def _border_mask(rgb: np.ndarray, tolerance: int, *, strict: bool) -> Mask | None:
    """Background = border-coloured pixels connected to the border; None when not applicable.

    Without ``strict`` a busy border or a vanishing subject means "no background": a photo of
    a scene is better as a full rectangle than as a random cut-out.
    """
    ring = _border_ring(rgb.shape[:2])
    reference = np.median(rgb[ring], axis=0)
    distance = np.linalg.norm(rgb.astype(np.float32) - reference.astype(np.float32), axis=2)
    similar = distance <= tolerance
    if not strict and similar[ring].mean() < BORDER_UNIFORM_FRACTION:
        return None
    keep = ~_flood(similar & ring, similar)
    if not strict and keep.mean() < MIN_SUBJECT_FRACTION:
        return None
    return keep


def _border_ring(shape: tuple[int, int]) -> Mask:
    height, width = shape
    ty, tx = max(1, round(0.02 * height)), max(1, round(0.02 * width))
    ring = np.ones(shape, dtype=bool)
    ring[ty : height - ty, tx : width - tx] = False
    return ring


def _flood(seed: Mask, allowed: Mask) -> Mask:
    """Cells of ``allowed`` 4-connected to ``seed``.

    Whole row runs and column runs are filled at once, so the loop runs once per turn of the
    path rather than once per cell.
    """
    reached = seed & allowed
    while True:
        grown = _spread_runs(reached, allowed)
        grown = _spread_runs(grown.T, allowed.T).T
        if np.array_equal(grown, reached):
            return grown
        reached = grown


def _spread_runs(reached: Mask, allowed: Mask) -> Mask:
    """Every horizontal run of ``allowed`` that contains a reached cell becomes reached."""
    height, width = allowed.shape
    padded = np.zeros((height, width + 1), dtype=bool)  # the extra column splits runs per row
    padded[:, :width] = allowed
    flat = padded.ravel()
    starts = flat & ~np.concatenate(([False], flat[:-1]))
    run_id = np.cumsum(starts) * flat
    hit = np.zeros(int(starts.sum()) + 1, dtype=bool)
    hit[run_id.reshape(height, width + 1)[:, :width][reached]] = True
    hit[0] = False
    return hit[run_id].reshape(height, width + 1)[:, :width]


# --- grid resolution -------------------------------------------------------------------------


def _choose_grid(keep_full: Mask, size: tuple[int, int], face_limit: int) -> Mask:
    """The largest grid mask whose mesh stays within ``face_limit`` (binary search)."""
    mask_image = Image.fromarray(keep_full.astype(np.uint8) * 255)
    width, height = size
    coverage = max(float(keep_full.mean()), 0.01)
    estimate = math.sqrt(face_limit / (4 * coverage) * max(size) / min(size))
    low, high = 2, min(MAX_GRID, int(2 * estimate) + 4)
    best = _grid_mask(mask_image, _grid_dims(low, width, height))
    while low < high:
        middle = (low + high + 1) // 2
        candidate = _grid_mask(mask_image, _grid_dims(middle, width, height))
        if _face_count(candidate) <= face_limit:
            low, best = middle, candidate
        else:
            high = middle - 1
    if not best.any():
        raise GenerationError("NO_SUBJECT", "The subject is too small to build a relief.")
    return best


def _grid_dims(long_side: int, width: int, height: int) -> tuple[int, int]:
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _grid_mask(mask_image: Image.Image, dims: tuple[int, int]) -> Mask:
    resized = mask_image.resize(dims, Image.Resampling.BILINEAR)
    return _fix_pinches(np.asarray(resized) >= 128)


def _fix_pinches(keep: Mask) -> Mask:
    """Fill 2x2 blocks where kept cells touch only at a corner.

    Such a corner would be shared by four wall faces and break the manifold (watertight) mesh.
    Filling only grows the mask, so the loop ends.
    """
    keep = keep.copy()
    while True:
        a, b, c, d = keep[:-1, :-1], keep[:-1, 1:], keep[1:, :-1], keep[1:, 1:]
        block = (a & d & ~b & ~c) | (b & c & ~a & ~d)
        if not block.any():
            return keep
        keep[:-1, :-1] |= block
        keep[:-1, 1:] |= block
        keep[1:, :-1] |= block
        keep[1:, 1:] |= block


def _face_count(keep: Mask) -> int:
    # Top + bottom: 4 triangles per cell; walls: 2 per boundary edge.
    padded = np.pad(keep, 1)
    edges = np.count_nonzero(padded[1:] != padded[:-1])
    edges += np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return 4 * int(np.count_nonzero(keep)) + 2 * int(edges)


# --- height field ----------------------------------------------------------------------------


def _heights(rgb: np.ndarray, keep: Mask, smoothing: float, invert: bool) -> np.ndarray:
    """Per-cell height in 0..1 from Rec. 709 luminance."""
    luminance = (rgb.astype(np.float32) @ REC709) / 255.0
    if invert:
        luminance = 1.0 - luminance
    if smoothing <= 0:
        return luminance
    # Normalised blur: background colour must not bleed into the subject's edge heights.
    weight = keep.astype(np.float32)
    total = _blur(luminance * weight, smoothing)
    norm = _blur(weight, smoothing)
    return np.where(norm > 1e-6, total / np.maximum(norm, 1e-6), luminance)


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    # Separable gaussian in numpy: Pillow's GaussianBlur only handles 8-bit images.
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    return _convolve_rows(_convolve_rows(values, kernel).T, kernel).T


def _convolve_rows(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    radius, count = len(kernel) // 2, values.shape[0]
    padded = np.pad(values, ((radius, radius), (0, 0)))
    result = np.zeros_like(values)
    for offset, weight in enumerate(kernel):
        result += weight * padded[offset : offset + count]
    return result


# --- mesh ------------------------------------------------------------------------------------


def _mesh_arrays(
    keep: Mask, cell_z: np.ndarray, base: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Vertices, faces, UVs and the model units per image pixel.

    Top vertices come first, bottom vertices follow in the same order (index + n).
    """
    rows, cols = keep.shape
    weights = keep.astype(np.float64)
    node_sum, node_count = _corner_sum(cell_z * weights), _corner_sum(weights)
    used = node_count > 0
    node_id = np.full(used.shape, -1, dtype=np.int64)
    node_id[used] = np.arange(np.count_nonzero(used))
    ii, jj = np.nonzero(used)
    cell_w, cell_h = size[0] / cols, size[1] / rows
    scale = 1.0 / ((jj.max() - jj.min()) * cell_w)  # the kept footprint is 1.0 wide
    x = (jj - (jj.max() + jj.min()) / 2) * cell_w * scale
    y = ((ii.max() + ii.min()) / 2 - ii) * cell_h * scale
    top = np.column_stack([x, y, node_sum[used] / node_count[used]])
    bottom = np.column_stack([x, y, np.full(len(x), -base)])
    uv = np.column_stack([jj / cols, 1.0 - ii / rows])  # trimesh UVs: v = 1 at the image top
    faces = _faces(keep, node_id, len(x))
    return np.vstack([top, bottom]), faces, np.vstack([uv, uv]), scale


def _corner_sum(values: np.ndarray) -> np.ndarray:
    """For each grid node, the sum of the (up to four) cells that touch it."""
    padded = np.pad(values, 1)
    return padded[:-1, :-1] + padded[:-1, 1:] + padded[1:, :-1] + padded[1:, 1:]


def _faces(keep: Mask, node_id: np.ndarray, count: int) -> np.ndarray:
    ci, cj = np.nonzero(keep)
    # Corners: a top-left, b top-right, c bottom-right, d bottom-left (image orientation).
    a, b = node_id[ci, cj], node_id[ci, cj + 1]
    c, d = node_id[ci + 1, cj + 1], node_id[ci + 1, cj]
    top = np.concatenate([np.column_stack([a, d, c]), np.column_stack([a, c, b])])
    bottom = np.concatenate([np.column_stack([a, c, d]), np.column_stack([a, b, c])]) + count
    padded = np.pad(keep, 1)
    # Each open side, as the top face traverses it (p -> q); the wall runs it backwards.
    sides = (
        (~padded[ci + 1, cj], a, d),  # left
        (~padded[ci + 2, cj + 1], d, c),  # below
        (~padded[ci + 1, cj + 2], c, b),  # right
        (~padded[ci, cj + 1], b, a),  # above
    )
    p = np.concatenate([start[open_] for open_, start, _ in sides])
    q = np.concatenate([end[open_] for open_, _, end in sides])
    walls = np.concatenate(
        [np.column_stack([q, p, p + count]), np.column_stack([q, p + count, q + count])]
    )
    return np.concatenate([top, bottom, walls]).astype(np.int64)


# --- output ----------------------------------------------------------------------------------


def _export_glb(
    vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: Image.Image
) -> bytes:
    # trimesh embeds images whose ``format`` is JPEG as JPEG: a tenth of a PNG photo's size.
    texture.format = "JPEG"
    material = trimesh.visual.material.PBRMaterial(
        name="relief", baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=0.9
    )
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, visual=visual, process=False)
    return mesh.export(file_type="glb")


def _preview(image: Image.Image, cell_z: np.ndarray, keep: Mask, scale: float) -> bytes:
    """The photo lit by the relief's own height field; transparent where there is no mesh."""
    # Always PREVIEW_SIZE on the long side, so pages can lay previews out predictably.
    scale_px = PREVIEW_SIZE / max(image.size)
    # At least 2 pixels each way: the shading needs a gradient (very thin images exist).
    size = (max(2, round(image.width * scale_px)), max(2, round(image.height * scale_px)))
    small = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    z = _resize_float(cell_z, size)
    inside = _resize_float(keep, size) >= 0.5
    pixel = image.width / size[0] * scale  # model units per preview pixel
    dz_drow, dz_dcol = np.gradient(z.astype(np.float64), pixel)
    # Image rows grow downwards while model y grows upwards, hence the sign of the y term.
    normal = np.dstack([-dz_dcol, dz_drow, np.ones_like(z, dtype=np.float64)])
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    lambert = np.clip(normal @ LIGHT, 0.0, None) / LIGHT[2]
    shade = AMBIENT + (1.0 - AMBIENT) * lambert
    photo = np.asarray(small.convert("RGB"), dtype=np.float64)
    rgb = np.clip(photo * shade[..., None], 0, 255).astype(np.uint8)
    rgba = np.dstack([rgb, inside.astype(np.uint8) * 255])
    buffer = io.BytesIO()
    # Level 4 compresses as well as the default 6 on photos, about three times faster.
    Image.fromarray(rgba).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def _resize_float(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(values.astype(np.float32))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))
