"""Tests of the offline Relief generator: pure functions, no database, no Django settings."""

from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from PIL import Image

from apps.jobs.providers import relief
from apps.jobs.providers.base import (
    GenerationCanceled,
    GenerationError,
    Output,
    ParameterError,
    RunContext,
)
from apps.jobs.providers.relief import ReliefGenerator

DATA = Path(__file__).resolve().parent.parent / "data"
ASTRONAUT = DATA / "astronaut.png"
HORSE = DATA / "horse.png"


def run(path: Path, context: RunContext | None = None, **params: Any) -> list[Output]:
    generator = ReliefGenerator()
    return generator.run(path, generator.clean_params(params), context or RunContext("test"))


def load_mesh(outputs: list[Output]) -> trimesh.Trimesh:
    model = next(output for output in outputs if output.kind == "model")
    return trimesh.load(io.BytesIO(model.data), file_type="glb", force="mesh")


def footprint_fill(mesh: trimesh.Trimesh) -> float:
    """Projected area of the upward faces over the area of the xy bounding box."""
    triangles = mesh.triangles
    edges_1, edges_2 = triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    cross_z = edges_1[:, 0] * edges_2[:, 1] - edges_1[:, 1] * edges_2[:, 0]
    extents = mesh.extents
    return float(np.clip(cross_z, 0, None).sum() / 2 / (extents[0] * extents[1]))


def rgba_file(tmp_path: Path, alpha: np.ndarray, name: str = "cutout.png") -> Path:
    height, width = alpha.shape
    ramp = np.linspace(0, 255, width, dtype=np.float64)
    rgb = np.broadcast_to(ramp[None, :, None], (height, width, 3)).astype(np.uint8)
    path = tmp_path / name
    Image.fromarray(np.dstack([rgb, alpha.astype(np.uint8)])).save(path)
    return path


def disc_alpha(size: int = 200, inner: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    return np.where((radius < 0.8) & (radius >= inner), 255, 0)


@pytest.fixture(scope="module")
def astronaut_outputs() -> list[Output]:
    return run(ASTRONAUT)


def test_it_returns_a_glb_model_and_a_png_preview(astronaut_outputs: list[Output]) -> None:
    model, preview = astronaut_outputs
    assert (model.kind, model.format, model.content_type) == ("model", "glb", "model/gltf-binary")
    assert model.data[:4] == b"glTF"
    assert (preview.kind, preview.format, preview.content_type) == ("preview", "png", "image/png")
    image = Image.open(io.BytesIO(preview.data))
    assert image.format == "PNG" and image.mode == "RGBA"
    assert max(image.size) == 512


def test_model_is_a_watertight_solid_with_outward_winding(astronaut_outputs: list[Output]) -> None:
    mesh = load_mesh(astronaut_outputs)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0


def test_model_carries_the_photo_as_texture_with_uvs(astronaut_outputs: list[Output]) -> None:
    mesh = load_mesh(astronaut_outputs)
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv is not None and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    texture = mesh.visual.material.baseColorTexture
    assert isinstance(texture, Image.Image) and max(texture.size) == 512


def test_model_is_one_unit_wide_centred_and_faces_plus_z(astronaut_outputs: list[Output]) -> None:
    mesh = load_mesh(astronaut_outputs)
    (x0, y0, z0), (x1, y1, z1) = mesh.bounds
    assert x1 - x0 == pytest.approx(1.0)
    assert (x0 + x1, y0 + y1) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert z0 == pytest.approx(-0.04)  # default base thickness
    assert 0 < z1 <= 0.12 + 1e-9  # default relief depth


@pytest.mark.parametrize("face_limit", [1000, 5000, 20000])
def test_it_respects_face_limit(face_limit: int) -> None:
    faces = len(load_mesh(run(ASTRONAUT, face_limit=face_limit)).faces)
    assert 0.8 * face_limit <= faces <= face_limit


@pytest.mark.parametrize(
    "name", ["chelsea.png", "coffee.png", "rocket.jpg", "horse.png", "logo.png"]
)
def test_it_never_exceeds_face_limit_and_stays_watertight(name: str) -> None:
    mesh = load_mesh(run(DATA / name, face_limit=3000))
    assert len(mesh.faces) <= 3000
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_busy_photo_becomes_a_full_rectangle(astronaut_outputs: list[Output]) -> None:
    assert footprint_fill(load_mesh(astronaut_outputs)) == pytest.approx(1.0, abs=1e-6)


def test_uniform_border_background_is_cut_away() -> None:
    # horse.png is a black silhouette on opaque white (only its corner pixels are translucent).
    cut = load_mesh(run(HORSE, face_limit=5000))
    full = load_mesh(run(HORSE, face_limit=5000, background="none"))
    assert footprint_fill(full) == pytest.approx(1.0, abs=1e-6)
    assert footprint_fill(cut) < 0.6
    assert cut.is_watertight and cut.volume > 0


def test_horse_preview_is_transparent_where_the_background_was() -> None:
    preview = Image.open(io.BytesIO(run(HORSE, face_limit=2000)[1].data))
    alpha = np.asarray(preview)[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    assert 0.1 < (alpha == 255).mean() < 0.7


def test_alpha_channel_defines_the_footprint(tmp_path: Path) -> None:
    mesh = load_mesh(run(rgba_file(tmp_path, disc_alpha()), face_limit=5000))
    assert footprint_fill(mesh) == pytest.approx(np.pi / 4, abs=0.03)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_transparent_hole_makes_a_watertight_ring(tmp_path: Path) -> None:
    mesh = load_mesh(run(rgba_file(tmp_path, disc_alpha(inner=0.4)), face_limit=4000))
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert mesh.euler_number == 0  # a torus-like solid: one through-hole


def test_fully_transparent_image_has_no_subject(tmp_path: Path) -> None:
    path = rgba_file(tmp_path, np.zeros((50, 50)))
    with pytest.raises(GenerationError) as error:
        run(path, background="alpha")
    assert error.value.code == "NO_SUBJECT"


def test_zero_base_thickness_puts_the_bottom_at_z0_and_stays_solid() -> None:
    mesh = load_mesh(run(ASTRONAUT, face_limit=2000, base_thickness=0))
    assert mesh.bounds[0][2] == pytest.approx(0.0)
    assert mesh.is_watertight and mesh.volume > 0


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees: portrait
    Image.open(ASTRONAUT).convert("RGB").resize((200, 100)).save(path, exif=exif)
    extents = load_mesh(run(path, face_limit=2000)).extents
    assert extents[1] / extents[0] == pytest.approx(2.0, rel=0.05)


def test_output_is_deterministic() -> None:
    first = run(HORSE, face_limit=3000, invert=True)
    second = run(HORSE, face_limit=3000, invert=True)
    assert [output.data for output in first] == [output.data for output in second]


def test_astronaut_output_is_deterministic(astronaut_outputs: list[Output]) -> None:
    assert [o.data for o in run(ASTRONAUT)] == [o.data for o in astronaut_outputs]


def test_invert_changes_the_output() -> None:
    plain = run(ASTRONAUT, face_limit=2000)
    inverted = run(ASTRONAUT, face_limit=2000, invert=True)
    assert plain[0].data != inverted[0].data
    assert plain[1].data != inverted[1].data
    top_plain = load_mesh(plain).vertices[:, 2].clip(0).mean()
    top_inverted = load_mesh(inverted).vertices[:, 2].clip(0).mean()
    assert top_plain != pytest.approx(top_inverted)


def test_params_are_declared_in_order_with_defaults() -> None:
    generator = ReliefGenerator()
    assert [param.name for param in generator.params] == [
        "face_limit",
        "relief_depth",
        "base_thickness",
        "invert",
        "smoothing",
        "background",
        "background_tolerance",
        "texture_size",
    ]
    assert generator.clean_params({}) == {
        "face_limit": 20000,
        "relief_depth": 0.12,
        "base_thickness": 0.04,
        "invert": False,
        "smoothing": 1.5,
        "background": "auto",
        "background_tolerance": 40,
        "texture_size": 1024,
    }
    assert (generator.id, generator.name, generator.formats) == (
        "relief",
        "Relief (offline)",
        ("glb",),
    )


@pytest.mark.parametrize(
    "values",
    [
        {"face_limit": 499},
        {"face_limit": 200001},
        {"face_limit": 1000.5},
        {"relief_depth": 0.6},
        {"base_thickness": -0.1},
        {"smoothing": 11},
        {"invert": "maybe"},
        {"background": "magic"},
        {"background_tolerance": 256},
        {"texture_size": 4096},
        {"colour": "red"},
    ],
)
def test_out_of_range_or_unknown_params_are_rejected(values: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        ReliefGenerator().clean_params(values)


def test_undecodable_file_raises_generation_error(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("this is not an image")
    with pytest.raises(GenerationError) as error:
        run(path)
    assert error.value.code == "IMAGE_UNREADABLE"
    assert not error.value.transient


def test_cancel_request_raises_generation_canceled() -> None:
    with pytest.raises(GenerationCanceled):
        run(ASTRONAUT, RunContext("test", cancel_requested=lambda: True))


def test_cancel_between_steps_stops_the_run() -> None:
    calls: list[str] = []

    def progress(percent: int | None, stage: str, message: str) -> None:
        calls.append(stage)

    context = RunContext("test", progress=progress, cancel_requested=lambda: len(calls) >= 2)
    with pytest.raises(GenerationCanceled):
        run(ASTRONAUT, context, face_limit=1000)
    assert calls == ["analyzing", "meshing"]


def test_progress_increases_and_ends_at_100() -> None:
    percents: list[int | None] = []
    context = RunContext("test", progress=lambda percent, stage, message: percents.append(percent))
    run(ASTRONAUT, context, face_limit=1000)
    assert len(percents) >= 3
    assert all(isinstance(percent, int) for percent in percents)
    assert percents == sorted(set(percents))
    assert percents[-1] == 100


def test_sixteen_bit_greyscale_is_rescaled_not_clipped(tmp_path: Path) -> None:
    grey = np.asarray(Image.open(ASTRONAUT).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    z8 = load_mesh(run(tmp_path / "grey8.png", face_limit=2000)).vertices[:, 2].max()
    z16 = load_mesh(run(tmp_path / "grey16.png", face_limit=2000)).vertices[:, 2].max()
    assert z16 == pytest.approx(z8, rel=0.02)


def test_module_stays_free_of_django() -> None:
    source = Path(relief.__file__).read_text()
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [node])
    }
    assert not any(name.startswith("django") for name in imported)


@pytest.mark.parametrize("size", [(4000, 10), (10, 4000), (3, 2)])
def test_it_handles_extreme_aspect_ratios(tmp_path, size):
    path = tmp_path / "thin.png"
    Image.open(DATA / "astronaut.png").resize(size).save(path)
    outputs = ReliefGenerator().run(
        path, ReliefGenerator().clean_params({"face_limit": 2000}), RunContext(job_id="thin")
    )
    mesh = trimesh.load(io.BytesIO(outputs[0].data), file_type="glb", force="mesh")
    assert 0 < len(mesh.faces) <= 2000 and mesh.is_watertight
