"""The small interface every generator implements, and the parameter declarations they share.

A generator declares its parameters once (:class:`Param`); the API, the page form and the
validation all read that declaration. ``run`` turns one image into output files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ParamType = Literal["integer", "number", "boolean", "string"]


class ParameterError(ValueError):
    """A parameter value does not fit its declaration; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class GenerationError(Exception):
    """A generation failed. ``code`` is stable; ``message`` is safe to show to the user.

    ``transient`` errors (timeouts, 5xx, 429) may be retried; the others fail the job at once.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        upstream_failure: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        # Seconds the upstream asked us to wait (429 Retry-After), if it said.
        self.retry_after = retry_after
        # True when the upstream service itself failed (counts against its circuit breaker).
        self.upstream_failure = upstream_failure


class GenerationCanceled(Exception):
    """The job was canceled while the generator ran."""


@dataclass(frozen=True)
class Param:
    """One parameter of a generator: type, range, default and a help text for forms."""

    name: str
    type: ParamType
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str | int, ...] | None = None

    def clean(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParameterError."""
        if self.type == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
                return value.lower() in {"true", "1"}
            raise ParameterError(self.name, "must be true or false")
        if self.type == "string":
            if not isinstance(value, str):
                raise ParameterError(self.name, "must be a string")
            if self.choices and value not in self.choices:
                raise ParameterError(
                    self.name, f"must be one of {', '.join(map(str, self.choices))}"
                )
            return value
        number = self._number(value)
        if self.choices and number not in self.choices:
            raise ParameterError(self.name, f"must be one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and number < self.minimum:
            raise ParameterError(self.name, f"must be at least {_fmt(self.minimum)}")
        if self.maximum is not None and number > self.maximum:
            raise ParameterError(self.name, f"must be at most {_fmt(self.maximum)}")
        return number

    def _number(self, value: Any) -> int | float:
        if isinstance(value, bool):
            raise ParameterError(
                self.name, f"must be {'an integer' if self.type == 'integer' else 'a number'}"
            )
        if self.type == "integer":
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    pass
            raise ParameterError(self.name, "must be an integer")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(self.name, "must be a number") from None
        if not math.isfinite(number):
            raise ParameterError(self.name, "must be a finite number")
        return number

    def as_dict(self) -> dict[str, Any]:
        """The declaration as published by the API (``models/available``) and the page form."""
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
        }
        if self.minimum is not None:
            data["minimum"] = self.minimum
        if self.maximum is not None:
            data["maximum"] = self.maximum
        if self.choices is not None:
            data["choices"] = list(self.choices)
        return data


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


@dataclass(frozen=True)
class Output:
    """One file a generator produced: ``kind`` is "model" or "preview"."""

    kind: Literal["model", "preview"]
    format: str
    content_type: str
    data: bytes


# progress(percent 0-100 or None, stage, message, queue_position=None)
ProgressCallback = Callable[..., None]
# cancel_requested() -> True when the job was canceled
CancelCheck = Callable[[], bool]
# record_upstream(request_id or "", submitted_at_iso or "")
UpstreamRecorder = Callable[[str, str], None]


def _ignore(*args, **kwargs) -> None:
    return None


@dataclass
class RunContext:
    """What a generator gets besides the image: progress, cancellation, and the upstream
    request it may have submitted on an earlier attempt (to resume instead of paying twice)."""

    job_id: str
    progress: ProgressCallback = field(default=_ignore)
    cancel_requested: CancelCheck = field(default=lambda: False)
    upstream_request_id: str = ""
    upstream_submitted_at: str = ""
    record_upstream: UpstreamRecorder = field(default=_ignore)


class Generator:
    """Base class: subclasses set the class attributes and implement ``run``."""

    id: str = ""
    name: str = ""
    description: str = ""
    formats: tuple[str, ...] = ("glb",)
    params: tuple[Param, ...] = ()

    def availability(self) -> tuple[bool, str]:
        """(available, reason shown when it is not)."""
        return True, ""

    def clean_params(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validate ``values`` against the declaration; fill defaults; reject unknown names."""
        declared = {param.name: param for param in self.params}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise ParameterError(unknown[0], f"is not a parameter of {self.id}")
        cleaned = {}
        for name, param in declared.items():
            if name in values and values[name] is not None:
                cleaned[name] = param.clean(values[name])
            else:
                cleaned[name] = param.default
        return cleaned

    def param(self, name: str) -> Param | None:
        return next((param for param in self.params if param.name == name), None)

    def run(self, image_path: Path, params: dict[str, Any], context: RunContext) -> list[Output]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        available, reason = self.availability()
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "type": "image_to_3d",
            "supported_formats": list(self.formats),
            "parameters": [param.as_dict() for param in self.params],
            "available": available,
            "unavailable_reason": reason or None,
            "circuit_state": self.circuit_state(),
        }

    def circuit_state(self) -> str | None:
        """State of the circuit breaker in front of an upstream service (None: no upstream)."""
        return None
