"""FAL.AI generators through fal-client: Tripo3D v2.5, TRELLIS and Hunyuan3D v2.

A paid, slow, sometimes failing upstream must never lose a job, run it twice or hang a worker:

* every call has a timeout, and the whole job a deadline;
* fal-client's own retries are turned off (they would re-send a submit whose answer was lost);
  this module retries what is safe to retry (status polls, downloads, uploads), and a submit
  only when nothing was sent (connection refused) or the server answered with an error;
* the request id is recorded on the job the moment FAL returns it, so a redelivered message
  resumes polling that request instead of paying for a new one; a submit whose outcome is
  unknown is never sent again blindly;
* a circuit breaker per generator, shared through the cache, fails jobs fast while FAL is down.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import fal_client
import fal_client.client as fal_internals
import httpx
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from apps.jobs.breaker import CircuitBreaker
from apps.jobs.metrics import UPSTREAM_CALLS
from apps.jobs.providers.base import (
    GenerationCanceled,
    GenerationError,
    Generator,
    Output,
    Param,
    RunContext,
)

logger = logging.getLogger("image2model.jobs")

UNAVAILABLE_MESSAGE = "The generation service is unavailable. Please try again later."
UNCONFIRMED_MESSAGE = (
    "The generation service did not confirm the request for this file. It was not sent again, "
    "so it is not paid twice; please retry the file."
)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_URL = re.compile(r"https?://\S+")


def _seed() -> Param:
    return Param("seed", "integer", None, "Random seed, for repeatable results", 0, 2**31 - 1)


@dataclass(frozen=True)
class FalModel:
    """One FAL endpoint: how to call it and where its outputs are in the result."""

    id: str
    name: str
    description: str
    endpoint: str
    image_key: str
    params: tuple[Param, ...]
    mesh_keys: tuple[str, ...]
    preview_keys: tuple[str, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)


TRIPO3D = FalModel(
    id="tripo3d",
    name="Tripo3D v2.5 (FAL.AI)",
    description="Textured, production-quality meshes from one photo.",
    endpoint="tripo3d/tripo/v2.5/image-to-3d",
    image_key="image_url",
    params=(
        Param(
            "face_limit", "integer", None, "Most faces in the mesh (empty: adaptive)", 500, 500000
        ),
        Param("texture", "string", "standard", "Texture quality", choices=("no", "standard", "HD")),
        Param("pbr", "boolean", False, "Physically based materials (replaces texture)"),
        Param(
            "texture_alignment",
            "string",
            "original_image",
            "Align texture to",
            choices=("original_image", "geometry"),
        ),
        Param(
            "orientation",
            "string",
            "default",
            "Model orientation",
            choices=("default", "align_image"),
        ),
        _seed(),
    ),
    # pbr is sent even when false: FAL's own documentation disagrees on its default.
    mesh_keys=("model_mesh", "pbr_model", "base_model"),
    preview_keys=("rendered_image",),
)
TRELLIS = FalModel(
    id="trellis",
    name="TRELLIS (FAL.AI)",
    description="Structured 3D latents: fast, detailed textured meshes.",
    endpoint="fal-ai/trellis",
    image_key="image_url",
    params=(
        Param("ss_guidance_strength", "number", 7.5, "Sparse structure guidance", 0, 10),
        Param("ss_sampling_steps", "integer", 12, "Sparse structure sampling steps", 1, 50),
        Param("slat_guidance_strength", "number", 3.0, "Latent guidance", 0, 10),
        Param("slat_sampling_steps", "integer", 12, "Latent sampling steps", 1, 50),
        Param("mesh_simplify", "number", 0.95, "Mesh simplification ratio", 0.9, 0.98),
        Param("texture_size", "integer", 1024, "Texture size in pixels", choices=(512, 1024, 2048)),
        _seed(),
    ),
    mesh_keys=("model_mesh", "model_glb"),
)
HUNYUAN3D = FalModel(
    id="hunyuan3d",
    name="Hunyuan3D v2 (FAL.AI)",
    description="Detailed geometry; textured meshes on request (three times the price).",
    endpoint="fal-ai/hunyuan3d/v2",
    image_key="input_image_url",
    params=(
        Param("num_inference_steps", "integer", 50, "Inference steps", 1, 50),
        Param("guidance_scale", "number", 7.5, "Guidance scale", 0, 20),
        Param("octree_resolution", "integer", 256, "Octree resolution", 1, 1024),
        Param("textured_mesh", "boolean", False, "Textured mesh (costs three times as much)"),
        _seed(),
    ),
    mesh_keys=("model_mesh", "model_glb"),
)


def configure_fal_client() -> None:
    """Process-wide fal-client settings: our timeouts, no blind retries, optional fake host."""
    fal_internals.MAX_ATTEMPTS = 1
    timeout = settings.FAL_HTTP_TIMEOUT_SECONDS
    fal_internals.QUEUE_POLL_TIMEOUT = httpx.Timeout(timeout, connect=min(10.0, timeout))
    base = settings.FAL_BASE_URL_OVERRIDE.rstrip("/")
    if base:
        fal_internals.RUN_URL_FORMAT = f"{base}/run/"
        fal_internals.QUEUE_URL_FORMAT = f"{base}/queue/"
        fal_internals.REST_URL = f"{base}/rest"
        fal_internals.CDN_URL = f"{base}/cdn"


class FalGenerator(Generator):
    """A generator backed by one FAL endpoint."""

    def __init__(self, model: FalModel) -> None:
        self.spec = model
        self.id = model.id
        self.name = model.name
        self.description = model.description
        self.params = model.params
        self.model = model.endpoint
        self.breaker = CircuitBreaker(model.id)

    def availability(self) -> tuple[bool, str]:
        if not settings.FAL_KEY:
            return False, "FAL_KEY is not set on this server."
        return True, ""

    def circuit_state(self) -> str | None:
        return self.breaker.state()

    def run(self, image_path: Path, params: dict[str, Any], context: RunContext) -> list[Output]:
        # A job resuming a request FAL already accepted (and we pay for) always goes on to
        # collect it; the breaker only holds back new submits.
        if not context.upstream_request_id and not self.breaker.allow():
            raise GenerationError("GENERATION_UNAVAILABLE", UNAVAILABLE_MESSAGE)
        configure_fal_client()
        try:
            outputs = _Run(self.spec, context).execute(image_path, params)
        except GenerationError as error:
            UPSTREAM_CALLS.labels(self.id, error.code.lower()).inc()
            if error.upstream_failure:
                self.breaker.record_failure()
            raise
        except GenerationCanceled:
            UPSTREAM_CALLS.labels(self.id, "canceled").inc()
            raise
        UPSTREAM_CALLS.labels(self.id, "succeeded").inc()
        self.breaker.record_success()
        return outputs


class _Run:
    """One generation: upload, submit (once), poll, fetch the result, download the outputs."""

    def __init__(self, model: FalModel, context: RunContext) -> None:
        self.model = model
        self.context = context
        self.client = fal_client.SyncClient(
            key=settings.FAL_KEY, default_timeout=settings.FAL_HTTP_TIMEOUT_SECONDS
        )
        self.deadline = time.monotonic() + settings.FAL_JOB_DEADLINE_SECONDS

    def execute(self, image_path: Path, params: dict[str, Any]) -> list[Output]:
        handle = self._resume_or_submit(image_path, params)
        self._wait(handle)
        result = self._retrying(lambda: _result_of(handle), "fetching the result")
        return self._outputs(result)

    # --- submit, at most once ----------------------------------------------------------------

    def _resume_or_submit(self, image_path: Path, params: dict[str, Any]):
        if self.context.upstream_request_id:
            logger.info(
                "job %s resumes FAL request %s",
                self.context.job_id,
                self.context.upstream_request_id,
            )
            return self.client.get_handle(self.model.endpoint, self.context.upstream_request_id)
        if self.context.upstream_submitted_at:
            # An earlier attempt sent a submit and never learned its outcome.
            raise GenerationError("UPSTREAM_UNCONFIRMED", UNCONFIRMED_MESSAGE)
        self.context.progress(2, "uploading", "Sending the image to the generation service")
        image_url = self._retrying(lambda: self.client.upload_file(image_path), "uploading")
        return self._submit(self._arguments(image_url, params))

    def _arguments(self, image_url: str, params: dict[str, Any]) -> dict[str, Any]:
        arguments = {self.model.image_key: image_url, **self.model.fixed}
        arguments.update({name: value for name, value in params.items() if value is not None})
        return arguments

    def _submit(self, arguments: dict[str, Any]):
        self._check_cancel_and_deadline(None)
        self.context.record_upstream("", datetime.now(UTC).isoformat())
        try:
            handle = self.client.submit(self.model.endpoint, arguments)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            self.context.record_upstream("", "")  # nothing reached FAL: safe to submit later
            raise _transport_error(error) from None
        except fal_client.FalClientHTTPError as error:
            self.context.record_upstream("", "")  # FAL answered: the request was not accepted
            raise _http_error(error) from None
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as error:
            # Timeout, reset or garbled answer after the request went out: it may be running.
            logger.warning("job %s: FAL submit unconfirmed: %r", self.context.job_id, error)
            raise GenerationError(
                "UPSTREAM_UNCONFIRMED", UNCONFIRMED_MESSAGE, upstream_failure=True
            ) from None
        self.context.record_upstream(handle.request_id, "")
        self.context.progress(5, "submitted", "Request accepted by the generation service")
        return handle

    # --- wait for the request ----------------------------------------------------------------

    def _wait(self, handle) -> None:
        failures = 0
        while True:
            self._check_cancel_and_deadline(handle)
            try:
                status = handle.status(with_logs=True)
            except (fal_client.FalClientHTTPError, httpx.HTTPError) as error:
                mapped = _map_error(error)
                failures += 1
                if not mapped.transient or failures > settings.FAL_POLL_RETRIES:
                    raise mapped from None
                self._sleep(_backoff(failures, mapped.retry_after), handle)
                continue
            failures = 0
            if isinstance(status, fal_client.Completed):
                if status.error:
                    # The request itself ended in an error: resubmitting would be a new, paid
                    # request, so the job fails with what FAL said.
                    raise GenerationError(
                        "UPSTREAM_FAILED",
                        "The generation service could not make this model: "
                        + _safe(str(status.error)),
                        upstream_failure=status.error_type not in {"request_cancelled"},
                    )
                return
            self._report(status)
            self._sleep(settings.FAL_POLL_INTERVAL_SECONDS, handle)

    def _report(self, status) -> None:
        if isinstance(status, fal_client.Queued):
            position = status.position
            self.context.progress(
                None,
                "in_queue",
                f"Waiting in the generation queue (position {position})",
                queue_position=position,
            )
            return
        message, percent = _read_logs(getattr(status, "logs", None))
        self.context.progress(
            percent, "generating", message or "Generating the model", queue_position=None
        )

    def _check_cancel_and_deadline(self, handle) -> None:
        if self.context.cancel_requested():
            _cancel_quietly(handle)
            raise GenerationCanceled()
        if time.monotonic() > self.deadline:
            _cancel_quietly(handle)
            minutes = settings.FAL_JOB_DEADLINE_SECONDS / 60
            raise GenerationError(
                "GENERATION_TIMEOUT",
                f"Generation took longer than {minutes:g} minutes and was stopped.",
                upstream_failure=True,
            )

    def _sleep(self, seconds: float, handle) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            self._check_cancel_and_deadline(handle)

    def _retrying(self, call, what: str):
        """Call something safe to repeat (poll, result, upload), retrying transient faults."""
        for attempt in range(1, settings.FAL_POLL_RETRIES + 2):
            try:
                return call()
            except (fal_client.FalClientHTTPError, httpx.HTTPError) as error:
                mapped = _map_error(error)
                if not mapped.transient or attempt > settings.FAL_POLL_RETRIES:
                    logger.warning("job %s: FAL %s failed: %r", self.context.job_id, what, error)
                    raise mapped from None
                self._sleep(_backoff(attempt, mapped.retry_after), None)
        raise AssertionError("unreachable")

    # --- outputs -------------------------------------------------------------------------------

    def _outputs(self, result: Any) -> list[Output]:
        if not isinstance(result, dict):
            raise GenerationError(
                "UPSTREAM_BAD_RESULT", "The generation service sent an unreadable result."
            )
        mesh = _first_file(result, self.model.mesh_keys)
        if mesh is None:
            raise GenerationError("UPSTREAM_NO_MODEL", "The generation service returned no model.")
        self.context.progress(92, "downloading", "Downloading the model")
        outputs = [Output("model", "glb", "model/gltf-binary", self._download_model(mesh))]
        preview = _first_file(result, self.model.preview_keys)
        if preview is not None:
            image = self._download_preview(preview)
            if image is not None:
                outputs.append(image)
        return outputs

    def _download_model(self, url: str) -> bytes:
        data = self._retrying(lambda: _download(url), "downloading the model")
        if data[:4] != b"glTF":
            raise GenerationError(
                "UPSTREAM_BAD_OUTPUT",
                "The generation service returned a file that is not a GLB model.",
            )
        return data

    def _download_preview(self, url: str) -> Output | None:
        # A preview is a nicety: a broken one never fails a job that has its model.
        try:
            data = self._retrying(lambda: _download(url), "downloading the preview")
            with Image.open(BytesIO(data)) as image:
                kind = (image.format or "").lower()
        except (GenerationError, UnidentifiedImageError, OSError):
            logger.warning("job %s: preview not usable", self.context.job_id)
            return None
        content_types = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
        if kind not in content_types:
            return None
        return Output("preview", "jpg" if kind == "jpeg" else kind, content_types[kind], data)


def _result_of(handle) -> Any:
    try:
        return handle.get(interval=settings.FAL_POLL_INTERVAL_SECONDS)
    except ValueError:  # the body was not JSON
        raise GenerationError(
            "UPSTREAM_BAD_RESULT", "The generation service sent an unreadable result."
        ) from None


def _first_file(result: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = result.get(key)
        if isinstance(value, dict) and isinstance(value.get("url"), str) and value["url"]:
            return value["url"]
    return None


def _download(url: str) -> bytes:
    """Fetch an output at once (FAL URLs expire), streamed, refusing oversize files."""
    limit = settings.FAL_MAX_DOWNLOAD_BYTES
    too_large = GenerationError(
        "UPSTREAM_OUTPUT_TOO_LARGE",
        f"The generated file is larger than the {limit // (1024 * 1024)} MB limit.",
    )
    timeout = httpx.Timeout(settings.FAL_HTTP_TIMEOUT_SECONDS)
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        if response.status_code >= 400:
            response.read()
            raise httpx.HTTPStatusError(
                "download failed", request=response.request, response=response
            )
        if int(response.headers.get("content-length") or 0) > limit:
            raise too_large
        buffer = bytearray()
        for chunk in response.iter_bytes():
            buffer.extend(chunk)
            if len(buffer) > limit:
                raise too_large
    return bytes(buffer)


def _read_logs(logs) -> tuple[str, int | None]:
    """The last log message and the last percent any log line reported."""
    message, percent = "", None
    for entry in logs or []:
        text = str(entry.get("message", "")) if isinstance(entry, dict) else str(entry)
        if text:
            message = _safe(text, 150)
        if match := _PERCENT.search(text):
            percent = min(100, round(float(match.group(1))))
    return message, percent


def _cancel_quietly(handle) -> None:
    if handle is None:
        return
    try:
        handle.cancel()
    except Exception:  # best effort: FAL may have finished, or be unreachable
        logger.info("could not cancel FAL request %s", getattr(handle, "request_id", "?"))


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, 120.0)
    base = settings.FAL_RETRY_BASE_SECONDS
    return min(30.0, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)  # noqa: S311


def _safe(text: str, limit: int = 300) -> str:
    """Upstream text made safe to show: no URLs, one line, bounded."""
    return " ".join(_URL.sub("[link]", text).split())[:limit]


def _map_error(error: Exception) -> GenerationError:
    if isinstance(error, fal_client.FalClientHTTPError):
        return _http_error(error)
    if isinstance(error, httpx.HTTPStatusError):
        return _status_error(error.response.status_code, error.response.headers, "")
    return _transport_error(error)


def _transport_error(error: Exception) -> GenerationError:
    if isinstance(error, httpx.TimeoutException):
        return GenerationError(
            "UPSTREAM_TIMEOUT",
            "The generation service did not answer in time.",
            transient=True,
            upstream_failure=True,
        )
    return GenerationError(
        "UPSTREAM_UNREACHABLE",
        "The generation service could not be reached.",
        transient=True,
        upstream_failure=True,
    )


def _http_error(error) -> GenerationError:
    return _status_error(error.status_code, error.response_headers or {}, error.message)


def _status_error(status: int, headers, detail: Any) -> GenerationError:
    if status == 422:
        return GenerationError(
            "UPSTREAM_VALIDATION", f"The generator refused the input: {_detail_text(detail)}"
        )
    if status == 429:
        return GenerationError(
            "UPSTREAM_RATE_LIMITED",
            "The generation service is busy (rate limited).",
            transient=True,
            retry_after=_retry_after(headers),
        )
    if status in (408,) or status >= 500:
        return GenerationError(
            "UPSTREAM_ERROR",
            f"The generation service failed (HTTP {status}).",
            transient=True,
            upstream_failure=True,
        )
    if status in (401, 403):
        return GenerationError(
            "UPSTREAM_AUTH",
            "The generation service refused this server's credentials.",
        )
    return GenerationError(
        "UPSTREAM_REJECTED", f"The generation service refused the request (HTTP {status})."
    )


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(
                    f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg"))
                )
        return _safe("; ".join(parts) or "invalid input")
    return _safe(str(detail) or "invalid input")


def _retry_after(headers) -> float | None:
    value = {k.lower(): v for k, v in dict(headers).items()}.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


GENERATORS = [FalGenerator(TRIPO3D), FalGenerator(TRELLIS), FalGenerator(HUNYUAN3D)]
