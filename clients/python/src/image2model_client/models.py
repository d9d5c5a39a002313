"""Typed views of the v2 API's resources (see docs/api-v2.md of the server).

Each model is a frozen dataclass built with ``from_dict``; fields the server adds later are
kept in ``raw`` and ignored otherwise, and missing optional fields get their defaults, so a
newer server does not break an older client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

BATCH_FINISHED = frozenset({"completed", "partially_completed", "failed", "canceled"})
JOB_FINISHED = frozenset({"succeeded", "failed", "canceled"})


def parse_datetime(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _int(value: Any, default: int | None = None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class Artifact:
    """One stored output of a job: the model, or a preview."""

    id: str
    kind: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    format: str | None = None
    face_count: int | None = None
    content_type: str | None = None
    url: str | None = None
    url_expires_at: datetime | None = None
    job_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, job_id: str | None = None) -> Artifact:
        return cls(
            id=str(data.get("id", "")),
            kind=data.get("kind") or "model",
            filename=data.get("filename") or "",
            size=_int(data.get("size")),
            sha256=data.get("sha256"),
            format=data.get("format"),
            face_count=_int(data.get("face_count")),
            content_type=data.get("content_type"),
            url=data.get("url"),
            url_expires_at=parse_datetime(data.get("url_expires_at")),
            job_id=job_id,
            raw=data,
        )


@dataclass(frozen=True)
class JobError:
    code: str
    message: str

    @classmethod
    def from_value(cls, value: Any) -> JobError | None:
        if not value:
            return None
        if isinstance(value, dict):
            return cls(code=str(value.get("code") or ""), message=str(value.get("message") or ""))
        return cls(code="", message=str(value))


@dataclass(frozen=True)
class Job:
    """One generation for one photo."""

    id: str
    batch_id: str
    file_name: str
    status: str
    stage: str = ""
    progress: int | None = 0
    message: str = ""
    queue_position: int | None = None
    eta_seconds: int | None = None
    generator: str = ""
    requested_generator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    error: JobError | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    artifacts: tuple[Artifact, ...] = ()
    events_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINISHED

    @property
    def models(self) -> tuple[Artifact, ...]:
        return tuple(a for a in self.artifacts if a.kind == "model")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        job_id = str(data.get("id", ""))
        return cls(
            id=job_id,
            batch_id=str(data.get("batch_id") or ""),
            file_name=data.get("file_name") or data.get("filename") or "",
            status=data.get("status") or "",
            stage=data.get("stage") or "",
            progress=_int(data.get("progress")),
            message=data.get("message") or "",
            queue_position=_int(data.get("queue_position")),
            eta_seconds=_int(data.get("eta_seconds")),
            generator=data.get("generator") or "",
            requested_generator=data.get("requested_generator") or "",
            params=dict(data.get("params") or {}),
            attempts=_int(data.get("attempts"), 0) or 0,
            error=JobError.from_value(data.get("error")),
            created_at=parse_datetime(data.get("created_at")),
            started_at=parse_datetime(data.get("started_at")),
            finished_at=parse_datetime(data.get("finished_at")),
            artifacts=tuple(
                Artifact.from_dict(a, job_id=job_id)
                for a in data.get("artifacts") or ()
                if isinstance(a, dict)
            ),
            events_url=data.get("events_url"),
            raw=data,
        )


@dataclass(frozen=True)
class Counts:
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Counts:
        data = data or {}
        return cls(**{k: _int(data.get(k), 0) or 0 for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Batch:
    """One upload: a set of jobs made with one generator and one set of parameters.

    ``jobs`` is filled in the batch's own answers and empty in lists. ``replayed`` is true when
    the server answered a create with the stored first answer (``Idempotent-Replayed: true``).
    """

    id: str
    status: str
    generator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    finished: bool = False
    progress: int | None = 0
    counts: Counts = field(default_factory=Counts)
    jobs: tuple[Job, ...] = ()
    events_url: str | None = None
    archive_url: str | None = None
    stream_token: str | None = None
    replayed: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, replayed: bool = False) -> Batch:
        status = data.get("status") or ""
        return cls(
            id=str(data.get("id", "")),
            status=status,
            generator=data.get("generator") or "",
            params=dict(data.get("params") or {}),
            created_at=parse_datetime(data.get("created_at")),
            finished=bool(data.get("finished", status in BATCH_FINISHED)),
            progress=_int(data.get("progress")),
            counts=Counts.from_dict(data.get("counts")),
            jobs=tuple(Job.from_dict(j) for j in data.get("jobs") or () if isinstance(j, dict)),
            events_url=data.get("events_url"),
            archive_url=data.get("archive_url"),
            stream_token=data.get("stream_token"),
            replayed=replayed,
            raw=data,
        )


@dataclass(frozen=True)
class GeneratorParam:
    name: str
    type: str = ""
    default: Any = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorParam:
        choices = data.get("choices")
        return cls(
            name=data.get("name") or "",
            type=data.get("type") or "",
            default=data.get("default"),
            description=data.get("description") or "",
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            choices=tuple(choices) if choices is not None else None,
        )


@dataclass(frozen=True)
class Generator:
    id: str
    name: str = ""
    description: str = ""
    available: bool = True
    unavailable_reason: str | None = None
    circuit: str | None = None
    params: tuple[GeneratorParam, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generator:
        params = data.get("params")
        if params is None:
            params = data.get("parameters") or ()
        return cls(
            id=data.get("id") or "",
            name=data.get("name") or data.get("display_name") or data.get("id") or "",
            description=data.get("description") or "",
            available=bool(data.get("available", True)),
            unavailable_reason=data.get("unavailable_reason"),
            circuit=data.get("circuit", data.get("circuit_state")),
            params=tuple(GeneratorParam.from_dict(p) for p in params if isinstance(p, dict)),
            raw=data,
        )


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``file_update``, ``task_progress``, ``task_completed``,
    ``task_failed`` (and ``heartbeat``/``connection_timeout`` when asked for)."""

    name: str
    id: str | None
    data: Any

    @property
    def terminal(self) -> bool:
        return self.name in ("task_completed", "task_failed")
