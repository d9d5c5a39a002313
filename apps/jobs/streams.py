"""From the JobEvent log to the v1 stream events (shared by SSE and WebSocket consumers).

A feed folds the log of one batch (or one job) in order and yields, for each event, a
``file_update`` (id ``N``, the event's sequence number) and a ``task_progress`` (id ``N.1``);
when every job has ended it yields the terminal ``task_completed`` or ``task_failed`` (id
``N.2``). Every frame has its own id, so a client cut off between two frames of one event
resumes with exactly the frames it missed. The fold always starts at the first event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from apps.jobs.models import Job, JobEvent
from apps.jobs.presenters import V1_JOB_STATUS, v1_download_path

TERMINAL = {"succeeded", "failed", "canceled"}


@dataclass(frozen=True)
class StreamEvent:
    name: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.name in {"task_completed", "task_failed"}


@dataclass
class Feed:
    """The state of one stream: which jobs it covers and how far it has read."""

    batch_id: str
    job_id: str | None = None  # set for a single-job stream
    total: int = 0
    cursor: int = 0  # last sequence number folded
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: bool = False

    # (sequence, frame index) the client already has, from its Last-Event-ID.
    resume_after: tuple[int, int] | None = None

    def load(self) -> list[StreamEvent]:
        """Fold the events after the cursor; return the stream events they make (sync, DB)."""
        if not self.total:
            jobs = Job.objects.filter(batch_id=self.batch_id)
            if self.job_id:
                jobs = jobs.filter(pk=self.job_id)
            self.total = jobs.count()
        out: list[StreamEvent] = []
        events = list(self._events_after(self.cursor))
        for index, event in enumerate(events):
            frames = self._fold(event)
            # The terminal frame follows the newest event only: a batch retried after it
            # finished goes on streaming, and a replay does not stop at the first finish.
            if index == len(events) - 1 and self._finished():
                frames.append(self._terminal(self.cursor))
            if self.resume_after and self.resume_after[0] == self.cursor:
                frames = frames[self.resume_after[1] + 1 :]
            out.extend(frames)
        self.resume_after = None
        # Done once everything is folded and finished (also when the client had it all).
        self.done = self._finished()
        return out

    def push(self, message: dict[str, Any]) -> list[StreamEvent] | None:
        """The stream events of a pushed event, folded without reading the log.

        Only when the pushed event is exactly the next one after the cursor: then the log holds
        nothing in between, so the result is what ``load`` would make. An event already folded
        makes nothing. None means "read the log" (a gap, a push without its event, or a feed
        not loaded yet).
        """
        seq = message.get("seq" if self.job_id else "batch_seq")
        payload = message.get("payload")
        if not isinstance(seq, int) or not isinstance(payload, dict) or not self.total:
            return None
        if self.job_id and payload.get("job_id") != self.job_id:
            return None
        if seq <= self.cursor:
            return []
        if seq != self.cursor + 1 or self.resume_after is not None:
            return None
        frames = self._fold_payload(seq, payload)
        if self._finished():
            frames.append(self._terminal(seq))
        self.done = self._finished()
        return frames

    def replay_until(self, seq: int, frame: int) -> None:
        """Fold silently what the client has (its Last-Event-ID): events before ``seq``, and
        of event ``seq`` the frames up to ``frame``; ``load`` then sends the rest."""
        for event in self._events_after(0, until=seq - 1):
            self._fold(event)
        self.resume_after = (seq, frame)

    def _events_after(self, after: int, until: int | None = None):
        column = "seq" if self.job_id else "batch_seq"
        events = JobEvent.objects.filter(batch_id=self.batch_id, **{f"{column}__gt": after})
        if self.job_id:
            events = events.filter(job_id=self.job_id)
        if until is not None:
            events = events.filter(**{f"{column}__lte": until})
        return events.order_by(column).only("seq", "batch_seq", "payload")

    def _fold(self, event: JobEvent) -> list[StreamEvent]:
        return self._fold_payload(event.seq if self.job_id else event.batch_seq, event.payload)

    def _fold_payload(self, seq: int, payload: dict[str, Any]) -> list[StreamEvent]:
        self.cursor = seq
        self.jobs[payload["job_id"]] = payload
        return [
            StreamEvent("file_update", file_update(payload), f"{seq}"),
            StreamEvent("task_progress", self._progress(), f"{seq}.1"),
        ]

    def _finished(self) -> bool:
        return len(self.jobs) >= self.total and all(
            job["status"] in TERMINAL for job in self.jobs.values()
        )

    def _counts(self) -> tuple[int, int, int, int]:
        statuses = [job["status"] for job in self.jobs.values()]
        done = sum(status in TERMINAL for status in statuses)
        return (
            done,
            statuses.count("succeeded"),
            statuses.count("failed"),
            statuses.count("canceled"),
        )

    def _progress(self) -> dict[str, Any]:
        done, *_ = self._counts()
        progress = sum(
            100 if job["status"] in TERMINAL else (job["progress"] or 0)
            for job in self.jobs.values()
        )
        return {
            "status": "processing" if done < self.total else "completed",
            "progress": round(progress / self.total) if self.total else 0,
            "current": done,
            "total": self.total,
            "total_files": self.total,
            "message": f"{done} of {self.total} files processed",
            "job_id": self.batch_id,
            "task_id": self.batch_id,
            "timestamp": timezone.now().isoformat(),
        }

    def _terminal(self, seq: int) -> StreamEvent:
        _, succeeded, failed, canceled = self._counts()
        results = [_result(job) for job in self.jobs.values()]
        status = "completed" if succeeded == self.total else "partially_completed"
        if not succeeded:
            status = "canceled" if canceled == self.total else "failed"
        data = {
            "status": "completed" if succeeded else "failed",
            "progress": 100,
            "task_id": self.batch_id,
            "job_id": self.batch_id,
            "message": f"{succeeded} successful, {failed} failed, {canceled} cancelled",
            "timestamp": timezone.now().isoformat(),
            "summary": {
                "total_files": self.total,
                "successful_files": succeeded,
                "failed_files": failed,
            },
            "result": {
                "job_id": self.batch_id,
                "status": status,
                "total_files": self.total,
                "successful_files": succeeded,
                "failed_files": failed,
                "cancelled_files": canceled,
                "results": results,
            },
        }
        if not succeeded:
            data["error"] = "No file could be converted."
        return StreamEvent("task_completed" if succeeded else "task_failed", data, f"{seq}.2")


def file_update(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "file_id": payload["file_id"],
        "job_id": payload["job_id"],
        "filename": payload["filename"],
        "status": V1_JOB_STATUS[payload["status"]],
        "stage": payload["stage"],
        "progress": 100 if payload["status"] == "succeeded" else payload["progress"],
        "queue_position": payload["queue_position"],
        "message": payload["message"],
        "error": payload["error"],
        "error_code": payload["error_code"],
    }


def _result(payload: dict[str, Any]) -> dict[str, Any]:
    result = {
        "file_id": payload["file_id"],
        "job_id": payload["job_id"],
        "filename": payload["filename"],
        "status": V1_JOB_STATUS[payload["status"]],
        "error": payload["error"],
        "download_url": None,
    }
    if payload["status"] == "succeeded":
        stem = payload.get("output_stem") or payload["filename"].rsplit(".", 1)[0]
        result["download_url"] = v1_download_path(payload["batch_id"], f"{stem}.glb")
        result["model_format"] = "glb"
    return result
