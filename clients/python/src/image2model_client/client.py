"""The v2 API clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio or trio).

Both have the same methods with the same arguments; the async ones are coroutines, and the
iterators (:meth:`Client.list_batches`, :meth:`Client.follow_events`, ...) are async iterators.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar, Union
from urllib.parse import urljoin

import anyio
import httpx

from image2model_client import _http, errors
from image2model_client._http import RetryHook, RetryInfo, RetryPolicy
from image2model_client.models import Artifact, Batch, Event, Generator, Job, Page

FileInput = Union[
    str,
    "os.PathLike[str]",
    tuple[str, bytes | IO[bytes]],
    tuple[str, bytes | IO[bytes], str],
]
"""A photo to upload: a path, or ``(file name, bytes or binary file[, content type])``."""

UploadProgress = Callable[[int, int, int], None]
"""``on_upload_progress(file index, bytes of that file sent, size of that file)``."""

DownloadProgress = Callable[[Artifact, int, int], None]
"""``on_progress(artifact, bytes written, expected size or 0)``."""

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Longer than the server's heartbeat interval (15 s by default), so a dead connection shows.
STREAM_READ_TIMEOUT = 75.0
CHUNK = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Uploads


class _ProgressReader(io.RawIOBase):
    """A binary file that reports how far it has been read (httpx reads it while sending)."""

    def __init__(self, raw: IO[bytes], index: int, size: int, callback: UploadProgress | None):
        super().__init__()
        self._raw, self._index, self._size, self._callback = raw, index, size, callback

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        if self._callback is not None:
            self._callback(self._index, self._raw.tell(), self._size)
        return chunk

    def readinto(self, buffer: Any) -> int:  # pragma: no cover  io.RawIOBase contract
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()


def _size_of(stream: IO[bytes]) -> int:
    position = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(position)
    return size


def _open_files(
    files: Sequence[FileInput], stack: contextlib.ExitStack, callback: UploadProgress | None
) -> list[tuple[str, tuple[str, IO[bytes], str]]]:
    if isinstance(files, (str, bytes, os.PathLike)):
        raise TypeError("files must be a list of paths or (name, data) tuples")
    if not files:
        raise ValueError("at least one file is needed")
    fields = []
    for index, item in enumerate(files):
        content_type = None
        if isinstance(item, tuple):
            name, data = item[0], item[1]
            if len(item) > 2:
                content_type = item[2]
            stream: IO[bytes] = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        else:
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            name = path.name
            stream = stack.enter_context(path.open("rb"))
        content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        reader = _ProgressReader(stream, index, _size_of(stream), callback)
        fields.append(("files", (name, reader, content_type)))
    return fields


# ---------------------------------------------------------------------------------------------
# What both clients share


@dataclass
class _Config:
    base_url: str
    api_key: str | None
    retry: RetryPolicy
    on_retry: RetryHook | None


class _Base:
    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        max_attempts: int,
        retry: RetryPolicy | None,
        on_retry: RetryHook | None,
    ) -> None:
        self._config = _Config(
            base_url=_http.normalize_base_url(base_url),
            api_key=_http.resolve_api_key(api_key),
            retry=retry or RetryPolicy(max_attempts=max_attempts),
            on_retry=on_retry,
        )

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._config.retry

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/"):
            path = f"{_http.API_PREFIX}/{path}"
        return f"{self._config.base_url}{path}"

    def _notify_retry(
        self, request: httpx.Request, attempt: int, delay: float, response=None, error=None
    ) -> None:
        if self._config.on_retry is None:
            return
        self._config.on_retry(
            RetryInfo(
                attempt=attempt,
                delay=delay,
                method=request.method,
                url=str(request.url),
                status=response.status_code if response is not None else None,
                retry_after=response.headers.get("retry-after") if response is not None else None,
                error=error,
            )
        )

    @staticmethod
    def _create_parts(
        generator: str | None,
        params: dict[str, Any] | None,
        idempotency_key: str | None,
        wait: int | None,
    ) -> tuple[dict[str, str], dict[str, str], httpx.Timeout]:
        data: dict[str, str] = {}
        if generator:
            data["generator"] = generator
        if params is not None:
            data["params"] = json.dumps(params)
        headers = {"Idempotency-Key": idempotency_key or _http.new_idempotency_key()}
        timeout = httpx.Timeout(DEFAULT_TIMEOUT.read or 60.0, connect=10.0)
        wait = _http.check_wait(wait)
        if wait:
            headers["Prefer"] = f"wait={wait}"
            timeout = httpx.Timeout(wait + 60.0, connect=10.0)
        return data, headers, timeout

    @staticmethod
    def _events_path(batch_id: str | None, job_id: str | None) -> str:
        if (batch_id is None) == (job_id is None):
            raise ValueError("give exactly one of batch_id and job_id")
        if batch_id is not None:
            return f"batches/{batch_id}/events"
        return f"jobs/{job_id}/events"

    @staticmethod
    def _list_params(**params: Any) -> dict[str, Any]:
        return _http.clean_params(params)

    def _download_request(self, client: httpx.Client | httpx.AsyncClient, url: str):
        url = urljoin(self._config.base_url + "/", url)
        request = client.build_request("GET", url, headers={"Accept": "*/*"})
        if not _http.same_origin(url, self._config.base_url):
            request.headers.pop("Authorization", None)  # never send the key elsewhere
        return request

    @staticmethod
    def _target(artifact: Artifact, dest: str | os.PathLike[str]) -> Path:
        dest = Path(dest)
        if dest.is_dir() or str(dest).endswith(os.sep):
            name = Path(artifact.filename or f"{artifact.id}.{artifact.format or 'bin'}").name
            if name in ("", ".", ".."):
                name = f"{artifact.id}.{artifact.format or 'bin'}"
            dest = dest / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    @staticmethod
    def _verify(artifact: Artifact, part: Path, final: Path, written: int, digest: str) -> Path:
        if artifact.size is not None and written != artifact.size:
            part.unlink(missing_ok=True)
            raise errors.ChecksumMismatch(
                str(final), expected=str(artifact.size), actual=str(written), what="size"
            )
        if artifact.sha256 and digest.lower() != artifact.sha256.lower():
            part.unlink(missing_ok=True)
            raise errors.ChecksumMismatch(str(final), expected=artifact.sha256, actual=digest)
        os.replace(part, final)
        return final

    @staticmethod
    def _fresh_artifact(job: Job, artifact: Artifact) -> Artifact:
        for candidate in job.artifacts:
            if candidate.id == artifact.id or (
                candidate.filename == artifact.filename and candidate.kind == artifact.kind
            ):
                return candidate
        raise errors.NotFound(404, code="NOT_FOUND", detail=f"{artifact.filename} is gone")

    @staticmethod
    def _batch_artifacts(batch: Batch, kinds: Iterable[str]) -> list[Artifact]:
        kinds = set(kinds)
        return [a for job in batch.jobs for a in job.artifacts if a.kind in kinds]

    @staticmethod
    def _unique(path: Path, taken: set[Path]) -> Path:
        candidate, n = path, 2
        while candidate in taken:
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
            n += 1
        taken.add(candidate)
        return candidate


def _transport_error(exc: httpx.TransportError, request: httpx.Request) -> errors.TransportError:
    reason = str(exc) or type(exc).__name__
    return errors.TransportError(f"{request.method} {request.url} failed: {reason}", cause=exc)


# ---------------------------------------------------------------------------------------------
# Blocking client


class Client(_Base):
    """A blocking client of the image2model v2 API.

    ``base_url`` and ``api_key`` default to ``IMAGE2MODEL_URL`` and ``IMAGE2MODEL_API_KEY``.
    Requests refused with 429 or 503 are retried after the server's ``Retry-After``
    (see :class:`RetryPolicy`); ``on_retry`` is called before each wait.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        retry: RetryPolicy | None = None,
        on_retry: RetryHook | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(base_url, api_key, max_attempts, retry, on_retry)
        self._sleep = sleep
        self._http = httpx.Client(
            headers=_http.default_headers(self._config.api_key),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------

    def _send(self, build: Callable[[], httpx.Request], *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            request = build()
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._config.retry.delay_for_error(exc, request, attempt)
                if delay is None:
                    raise _transport_error(exc, request) from exc
                self._notify_retry(request, attempt, delay, error=exc)
                self._sleep(delay)
                continue
            delay = self._config.retry.delay_for_response(response, attempt)
            if delay is None:
                return response
            response.close()
            self._notify_retry(request, attempt, delay, response=response)
            self._sleep(delay)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self._url(path)
        return self._send(lambda: self._http.build_request(method, url, **kwargs))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _http.json_or_error(self._request(method, path, **kwargs))

    # -- batches ----------------------------------------------------------------------------

    def create_batch(
        self,
        files: Sequence[FileInput],
        generator: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        wait: int | None = None,
        on_upload_progress: UploadProgress | None = None,
    ) -> Batch:
        """Upload photos as one batch (``POST /api/v2/batches``).

        An ``Idempotency-Key`` is always sent (a new UUID unless given), so a retry after a
        429, a 503 or a lost connection never creates a second batch. ``wait`` (1 to 60) asks
        the server to answer once the batch is finished or that many seconds have passed
        (``Prefer: wait=N``); check ``batch.finished``.
        """
        data, headers, timeout = self._create_parts(generator, params, idempotency_key, wait)
        url = self._url("batches")
        with contextlib.ExitStack() as stack:
            fields = _open_files(files, stack, on_upload_progress)
            response = self._send(
                lambda: self._http.build_request(
                    "POST", url, data=data, files=fields, headers=headers, timeout=timeout
                )
            )
            body = _http.json_or_error(response)
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        return Batch.from_dict(body, replayed=replayed)

    def get_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(self._json("GET", f"batches/{batch_id}"))

    def list_batches_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        status: str | None = None,
        generator: str | None = None,
        created_after: Any = None,
        created_before: Any = None,
    ) -> Page[Batch]:
        params = self._list_params(
            limit=limit,
            cursor=cursor,
            status=status,
            generator=generator,
            created_after=created_after,
            created_before=created_before,
        )
        body = self._json("GET", "batches", params=params)
        return Page([Batch.from_dict(b) for b in body["items"]], body.get("next_cursor"))

    def list_batches(self, **filters: Any) -> Iterator[Batch]:
        """Every batch, newest first, page after page (``limit`` is the page size)."""
        return self._pages(self.list_batches_page, filters)

    def cancel_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(self._json("POST", f"batches/{batch_id}/cancel"))

    def retry_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(self._json("POST", f"batches/{batch_id}/retry"))

    def delete_batch(self, batch_id: str) -> None:
        self._json("DELETE", f"batches/{batch_id}")

    # -- jobs -------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        return Job.from_dict(self._json("GET", f"jobs/{job_id}"))

    def list_jobs_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        batch_id: str | None = None,
        status: str | None = None,
        generator: str | None = None,
        created_after: Any = None,
        created_before: Any = None,
    ) -> Page[Job]:
        params = self._list_params(
            limit=limit,
            cursor=cursor,
            batch_id=batch_id,
            status=status,
            generator=generator,
            created_after=created_after,
            created_before=created_before,
        )
        body = self._json("GET", "jobs", params=params)
        return Page([Job.from_dict(j) for j in body["items"]], body.get("next_cursor"))

    def list_jobs(self, **filters: Any) -> Iterator[Job]:
        """Every job, newest first, page after page (``limit`` is the page size)."""
        return self._pages(self.list_jobs_page, filters)

    def cancel_job(self, job_id: str) -> Job:
        return Job.from_dict(self._json("POST", f"jobs/{job_id}/cancel"))

    def retry_job(self, job_id: str) -> Job:
        return Job.from_dict(self._json("POST", f"jobs/{job_id}/retry"))

    def delete_job(self, job_id: str) -> None:
        self._json("DELETE", f"jobs/{job_id}")

    def generators(self) -> list[Generator]:
        return [Generator.from_dict(g) for g in self._json("GET", "generators")]

    @staticmethod
    def _pages(fetch: Callable[..., Page[T]], filters: dict[str, Any]) -> Iterator[T]:
        cursor = filters.pop("cursor", None)
        while True:
            page = fetch(cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # -- events -----------------------------------------------------------------------------

    def follow_events(
        self,
        batch_id: str | None = None,
        *,
        job_id: str | None = None,
        last_event_id: str | None = None,
        include_heartbeats: bool = False,
        max_reconnects: int = 10,
    ) -> Iterator[Event]:
        """The events of a batch (or of one job, with ``job_id``), until its terminal event.

        When the connection drops or the server ends the stream early, the client connects
        again with ``Last-Event-ID`` and goes on where it stopped, so no event is missed or
        repeated. ``last_event_id`` resumes a stream followed earlier. It gives up after
        ``max_reconnects`` reconnects in a row that brought no event.
        """
        url = self._url(self._events_path(batch_id, job_id))
        decoder = _http.SSEDecoder(last_event_id)
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if decoder.last_event_id:
                headers["Last-Event-ID"] = decoder.last_event_id
            received = 0
            decoder.reset_frame()
            try:
                response = self._send(
                    lambda h=headers: self._http.build_request(
                        "GET", url, headers=h, timeout=timeout
                    ),
                    stream=True,
                )
                try:
                    if response.status_code >= 400:
                        response.read()
                        raise errors.error_from_response(response)
                    for event in decoder.feed_lines(response.iter_lines()):
                        received += 1
                        failures = 0
                        if event.name in _http.QUIET_EVENTS and not include_heartbeats:
                            continue
                        yield event
                        if event.terminal:
                            return
                finally:
                    response.close()
            except httpx.TransportError as exc:
                failures += 1
                if failures > max_reconnects:
                    raise errors.TransportError(f"event stream lost: {exc}", cause=exc) from exc
            else:
                if _http.stream_ended_for_good(decoder.last_event_id, received):
                    return
                if received == 0:
                    failures += 1
                    if failures > max_reconnects:
                        raise errors.TransportError("event stream keeps closing without events")
            if failures:
                self._sleep(self._config.retry.backoff(failures))

    def wait_for_batch(
        self,
        batch_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
    ) -> Batch:
        """Follow the batch's events until it has finished; then its final state.

        ``timeout`` (seconds) raises :class:`TimeoutError` when the batch is still running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self.follow_events(batch_id, include_heartbeats=True):
            if on_event is not None and event.name not in _http.QUIET_EVENTS:
                on_event(event)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} did not finish in {timeout} s")
        return self.get_batch(batch_id)

    # -- downloads --------------------------------------------------------------------------

    def download_artifact(
        self,
        artifact: Artifact,
        dest: str | os.PathLike[str],
        *,
        on_progress: DownloadProgress | None = None,
    ) -> Path:
        """Download one artifact to ``dest`` (a file path, or a folder to keep its name).

        The file is written beside the target as ``<name>.part`` and renamed once its size
        and SHA-256 match the artifact's; on a mismatch it is deleted and
        :class:`~image2model_client.errors.ChecksumMismatch` is raised. An expired signed
        link is renewed once by fetching the job again.
        """
        final = self._target(artifact, dest)
        renewed = False
        while True:
            if not artifact.url:
                if renewed or not artifact.job_id:
                    raise errors.Image2ModelError(f"{artifact.filename} has no download URL")
                artifact, renewed = (
                    self._fresh_artifact(self.get_job(artifact.job_id), artifact),
                    True,
                )
                continue
            try:
                return self._download_once(artifact, final, on_progress)
            except (errors.Gone, errors.Forbidden):
                if renewed or not artifact.job_id:
                    raise
                artifact = self._fresh_artifact(self.get_job(artifact.job_id), artifact)
                renewed = True

    def _download_once(
        self, artifact: Artifact, final: Path, on_progress: DownloadProgress | None
    ) -> Path:
        part = final.with_name(final.name + ".part")
        attempt = 0
        while True:
            attempt += 1
            request = self._download_request(self._http, artifact.url or "")
            response = self._send(lambda r=request: r, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    raise errors.error_from_response(response)
                digest, written = hashlib.sha256(), 0
                with part.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        if on_progress is not None:
                            on_progress(artifact, written, artifact.size or 0)
            except httpx.TransportError as exc:
                part.unlink(missing_ok=True)
                delay = self._config.retry.delay_for_error(exc, request, attempt)
                if delay is None:
                    raise _transport_error(exc, request) from exc
                self._notify_retry(request, attempt, delay, error=exc)
                self._sleep(delay)
                continue
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            finally:
                response.close()
            return self._verify(artifact, part, final, written, digest.hexdigest())

    def download_batch(
        self,
        batch: Batch | str,
        out_dir: str | os.PathLike[str],
        *,
        kinds: Iterable[str] = ("model",),
        on_progress: DownloadProgress | None = None,
    ) -> list[Path]:
        """Download the models (or other ``kinds``) of every job of a batch into ``out_dir``.

        The batch is fetched again first, so its signed links are fresh.
        """
        batch_id = batch.id if isinstance(batch, Batch) else batch
        fresh = self.get_batch(batch_id)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        taken: set[Path] = set()
        for artifact in self._batch_artifacts(fresh, kinds):
            target = self._unique(self._target(artifact, out), taken)
            paths.append(self.download_artifact(artifact, target, on_progress=on_progress))
        return paths

    def download_job(
        self,
        job: Job | str,
        out_dir: str | os.PathLike[str],
        *,
        kinds: Iterable[str] = ("model",),
        on_progress: DownloadProgress | None = None,
    ) -> list[Path]:
        """Download the models (or other ``kinds``) of one job into ``out_dir``."""
        fresh = self.get_job(job.id if isinstance(job, Job) else job)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        kinds = set(kinds)
        return [
            self.download_artifact(a, out, on_progress=on_progress)
            for a in fresh.artifacts
            if a.kind in kinds
        ]


# ---------------------------------------------------------------------------------------------
# Async client


class AsyncClient(_Base):
    """The same API as :class:`Client`, for asyncio (or trio): ``await`` every method, and
    ``async for`` over :meth:`list_batches`, :meth:`list_jobs` and :meth:`follow_events`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        retry: RetryPolicy | None = None,
        on_retry: RetryHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        super().__init__(base_url, api_key, max_attempts, retry, on_retry)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            headers=_http.default_headers(self._config.api_key),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(
        self, build: Callable[[], httpx.Request], *, stream: bool = False
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            request = build()
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._config.retry.delay_for_error(exc, request, attempt)
                if delay is None:
                    raise _transport_error(exc, request) from exc
                self._notify_retry(request, attempt, delay, error=exc)
                await self._sleep(delay)
                continue
            delay = self._config.retry.delay_for_response(response, attempt)
            if delay is None:
                return response
            await response.aclose()
            self._notify_retry(request, attempt, delay, response=response)
            await self._sleep(delay)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self._url(path)
        response = await self._send(lambda: self._http.build_request(method, url, **kwargs))
        return _http.json_or_error(response)

    async def create_batch(
        self,
        files: Sequence[FileInput],
        generator: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        wait: int | None = None,
        on_upload_progress: UploadProgress | None = None,
    ) -> Batch:
        """See :meth:`Client.create_batch`."""
        data, headers, timeout = self._create_parts(generator, params, idempotency_key, wait)
        url = self._url("batches")
        with contextlib.ExitStack() as stack:
            fields = _open_files(files, stack, on_upload_progress)
            response = await self._send(
                lambda: self._http.build_request(
                    "POST", url, data=data, files=fields, headers=headers, timeout=timeout
                )
            )
            body = _http.json_or_error(response)
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        return Batch.from_dict(body, replayed=replayed)

    async def get_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(await self._json("GET", f"batches/{batch_id}"))

    async def list_batches_page(self, **filters: Any) -> Page[Batch]:
        """See :meth:`Client.list_batches_page`."""
        body = await self._json("GET", "batches", params=self._list_params(**filters))
        return Page([Batch.from_dict(b) for b in body["items"]], body.get("next_cursor"))

    def list_batches(self, **filters: Any) -> AsyncIterator[Batch]:
        return self._pages(self.list_batches_page, filters)

    async def cancel_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(await self._json("POST", f"batches/{batch_id}/cancel"))

    async def retry_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(await self._json("POST", f"batches/{batch_id}/retry"))

    async def delete_batch(self, batch_id: str) -> None:
        await self._json("DELETE", f"batches/{batch_id}")

    async def get_job(self, job_id: str) -> Job:
        return Job.from_dict(await self._json("GET", f"jobs/{job_id}"))

    async def list_jobs_page(self, **filters: Any) -> Page[Job]:
        """See :meth:`Client.list_jobs_page`."""
        body = await self._json("GET", "jobs", params=self._list_params(**filters))
        return Page([Job.from_dict(j) for j in body["items"]], body.get("next_cursor"))

    def list_jobs(self, **filters: Any) -> AsyncIterator[Job]:
        return self._pages(self.list_jobs_page, filters)

    async def cancel_job(self, job_id: str) -> Job:
        return Job.from_dict(await self._json("POST", f"jobs/{job_id}/cancel"))

    async def retry_job(self, job_id: str) -> Job:
        return Job.from_dict(await self._json("POST", f"jobs/{job_id}/retry"))

    async def delete_job(self, job_id: str) -> None:
        await self._json("DELETE", f"jobs/{job_id}")

    async def generators(self) -> list[Generator]:
        return [Generator.from_dict(g) for g in await self._json("GET", "generators")]

    @staticmethod
    async def _pages(fetch: Callable[..., Any], filters: dict[str, Any]) -> AsyncIterator[Any]:
        cursor = filters.pop("cursor", None)
        while True:
            page = await fetch(cursor=cursor, **filters)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def follow_events(
        self,
        batch_id: str | None = None,
        *,
        job_id: str | None = None,
        last_event_id: str | None = None,
        include_heartbeats: bool = False,
        max_reconnects: int = 10,
    ) -> AsyncIterator[Event]:
        """See :meth:`Client.follow_events`."""
        url = self._url(self._events_path(batch_id, job_id))
        decoder = _http.SSEDecoder(last_event_id)
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if decoder.last_event_id:
                headers["Last-Event-ID"] = decoder.last_event_id
            received = 0
            decoder.reset_frame()
            try:
                response = await self._send(
                    lambda h=headers: self._http.build_request(
                        "GET", url, headers=h, timeout=timeout
                    ),
                    stream=True,
                )
                try:
                    if response.status_code >= 400:
                        await response.aread()
                        raise errors.error_from_response(response)
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        received += 1
                        failures = 0
                        if event.name in _http.QUIET_EVENTS and not include_heartbeats:
                            continue
                        yield event
                        if event.terminal:
                            return
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                failures += 1
                if failures > max_reconnects:
                    raise errors.TransportError(f"event stream lost: {exc}", cause=exc) from exc
            else:
                if _http.stream_ended_for_good(decoder.last_event_id, received):
                    return
                if received == 0:
                    failures += 1
                    if failures > max_reconnects:
                        raise errors.TransportError("event stream keeps closing without events")
            if failures:
                await self._sleep(self._config.retry.backoff(failures))

    async def wait_for_batch(
        self,
        batch_id: str,
        *,
        on_event: Callable[[Event], Any] | None = None,
        timeout: float | None = None,
    ) -> Batch:
        """See :meth:`Client.wait_for_batch`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async for event in self.follow_events(batch_id, include_heartbeats=True):
            if on_event is not None and event.name not in _http.QUIET_EVENTS:
                on_event(event)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} did not finish in {timeout} s")
        return await self.get_batch(batch_id)

    async def download_artifact(
        self,
        artifact: Artifact,
        dest: str | os.PathLike[str],
        *,
        on_progress: DownloadProgress | None = None,
    ) -> Path:
        """See :meth:`Client.download_artifact`."""
        final = self._target(artifact, dest)
        renewed = False
        while True:
            if not artifact.url:
                if renewed or not artifact.job_id:
                    raise errors.Image2ModelError(f"{artifact.filename} has no download URL")
                job = await self.get_job(artifact.job_id)
                artifact, renewed = self._fresh_artifact(job, artifact), True
                continue
            try:
                return await self._download_once(artifact, final, on_progress)
            except (errors.Gone, errors.Forbidden):
                if renewed or not artifact.job_id:
                    raise
                artifact = self._fresh_artifact(await self.get_job(artifact.job_id), artifact)
                renewed = True

    async def _download_once(
        self, artifact: Artifact, final: Path, on_progress: DownloadProgress | None
    ) -> Path:
        part = final.with_name(final.name + ".part")
        attempt = 0
        while True:
            attempt += 1
            request = self._download_request(self._http, artifact.url or "")
            response = await self._send(lambda r=request: r, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    raise errors.error_from_response(response)
                digest, written = hashlib.sha256(), 0
                with part.open("wb") as out:
                    async for chunk in response.aiter_bytes(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        if on_progress is not None:
                            on_progress(artifact, written, artifact.size or 0)
            except httpx.TransportError as exc:
                part.unlink(missing_ok=True)
                delay = self._config.retry.delay_for_error(exc, request, attempt)
                if delay is None:
                    raise _transport_error(exc, request) from exc
                self._notify_retry(request, attempt, delay, error=exc)
                await self._sleep(delay)
                continue
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            finally:
                await response.aclose()
            return self._verify(artifact, part, final, written, digest.hexdigest())

    async def download_batch(
        self,
        batch: Batch | str,
        out_dir: str | os.PathLike[str],
        *,
        kinds: Iterable[str] = ("model",),
        on_progress: DownloadProgress | None = None,
    ) -> list[Path]:
        """See :meth:`Client.download_batch`."""
        fresh = await self.get_batch(batch.id if isinstance(batch, Batch) else batch)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        taken: set[Path] = set()
        for artifact in self._batch_artifacts(fresh, kinds):
            target = self._unique(self._target(artifact, out), taken)
            paths.append(await self.download_artifact(artifact, target, on_progress=on_progress))
        return paths

    async def download_job(
        self,
        job: Job | str,
        out_dir: str | os.PathLike[str],
        *,
        kinds: Iterable[str] = ("model",),
        on_progress: DownloadProgress | None = None,
    ) -> list[Path]:
        """See :meth:`Client.download_job`."""
        fresh = await self.get_job(job.id if isinstance(job, Job) else job)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        kinds = set(kinds)
        return [
            await self.download_artifact(a, out, on_progress=on_progress)
            for a in fresh.artifacts
            if a.kind in kinds
        ]
