"""Breaking changes between two OpenAPI documents, as stable one-line finding ids.

A change is breaking when a client written against OLD can fail against NEW:

* a path, an operation or a documented response status is gone;
* a response no longer offers a content type, loses a field, or a field may now be absent;
* a response value may now have a type it could not have before (a field becoming nullable
  included), or a bound on it was relaxed or dropped;
* an enum value is gone (in a response, a parameter or the request body);
* the request needs something new: a new required parameter or request field, an optional one
  that became required, a request body that became required, authentication;
* a request value is narrowed: a type it accepted is no longer accepted (``number`` to
  ``integer``, a branch of ``anyOf``/``oneOf`` gone), a bound is added or made stricter, a
  pattern is added or changed, or the request no longer accepts a content type.

``$ref`` are followed into ``components`` (each reference once per walk, so recursive schemas
end). Paths are matched with their parameters' names ignored: ``/jobs/{id}`` and
``/jobs/{job_id}`` are the same URL to a client.

Finding ids (``<where>: <what>``; a field path is dotted, ``[]`` marks array items, ``{}``
the values of a map, and ``body`` is the whole body):

    /api/v2/jobs: path removed
    DELETE /api/v2/jobs/{job_id}: operation removed
    GET /api/v2/jobs 404: response removed
    GET /api/v2/jobs 200: content type application/json removed
    GET /api/v2/jobs 200: field items[].eta_seconds removed
    GET /api/v2/jobs 200: field items[].eta_seconds became optional
    GET /api/v2/jobs 200: field items[].eta_seconds type changed: integer -> integer|null
    GET /api/v2/jobs 200: field items[].status enum value "queued" removed
    GET /api/v2/jobs 200: field items[].progress maximum loosened: 100 -> none
    GET /api/v2/jobs: new required query parameter status
    GET /api/v2/jobs: query parameter limit became required
    GET /api/v2/jobs: query parameter limit type changed: number -> integer
    GET /api/v2/jobs: query parameter limit maximum narrowed: 100 -> 50
    GET /api/v2/jobs: query parameter status enum value "queued" removed
    GET /api/v2/jobs: query parameter cursor pattern narrowed: none -> "^[a-z]+$"
    GET /api/v2/jobs: authentication now required
    POST /api/v2/batches: request body became required
    POST /api/v2/batches: request content type multipart/form-data removed
    POST /api/v2/batches: new required request field generator
    POST /api/v2/batches: request field generator became required
    POST /api/v2/batches: request field params.face_limit type changed: integer|null -> integer
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Bounds: (keyword, True when it is an upper bound).
BOUNDS = (
    ("maximum", True),
    ("exclusiveMaximum", True),
    ("maxLength", True),
    ("maxItems", True),
    ("maxProperties", True),
    ("minimum", False),
    ("exclusiveMinimum", False),
    ("minLength", False),
    ("minItems", False),
    ("minProperties", False),
)
ALL_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
_UNSET = object()


@dataclass
class Shape:
    """One schema, flattened: what it may be (types, enum, bounds) and what it contains."""

    types: frozenset[str] | None = None  # None: any type
    enum: list[Any] | None = None  # None: any value of its types
    bounds: dict[str, Any] = field(default_factory=dict)
    pattern: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # name -> raw schema
    required: frozenset[str] = frozenset()
    items: Any = None  # raw schema of array items
    values: Any = None  # raw schema of a map's values (additionalProperties)


class _Walker:
    """Resolves ``$ref`` inside one document."""

    def __init__(self, document: dict) -> None:
        self.document = document

    def resolve(self, schema: Any, seen: frozenset[str]) -> tuple[Any, frozenset[str]]:
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return {}, seen  # a cycle (or an outside reference): nothing more to compare
            seen = seen | {ref}
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, dict) else {}
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra and isinstance(target, dict) else target
        return schema, seen

    def shape(self, schema: Any, seen: frozenset[str]) -> tuple[Shape, frozenset[str]]:
        schema, seen = self.resolve(schema, seen)
        if not isinstance(schema, dict):
            return Shape(), seen  # `true` or a missing schema: anything
        shape = Shape()
        own_types = _types_of(schema)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            shapes = [self.shape(branch, seen)[0] for branch in branches]
            shape = _union(shapes)
            if own_types is not None and shape.types is not None:
                shape.types = shape.types & own_types
        else:
            shape.types = own_types
            if "enum" in schema or "const" in schema:
                values = schema["enum"] if "enum" in schema else [schema["const"]]
                shape.enum = [value for value in values if value is not None]
                if shape.types is None:
                    shape.types = frozenset(_json_type(value) for value in values)
                elif None in values:
                    shape.types = shape.types | {"null"}
            shape.bounds = {key: schema[key] for key, _ in BOUNDS if key in schema}
            shape.pattern = schema.get("pattern")
            shape.properties = dict(schema.get("properties") or {})
            shape.required = frozenset(schema.get("required") or ())
            shape.items = schema.get("items")
            additional = schema.get("additionalProperties")
            shape.values = additional if isinstance(additional, dict) else None
        for part in schema.get("allOf") or ():
            _merge_all_of(shape, self.shape(part, seen)[0])
        if schema.get("nullable") is True and shape.types is not None:
            shape.types = shape.types | {"null"}  # OpenAPI 3.0
        return shape, seen


def _types_of(schema: dict) -> frozenset[str] | None:
    declared = schema.get("type")
    if declared is None:
        if "properties" in schema:
            return frozenset({"object"})
        if "items" in schema:
            return frozenset({"array"})
        return None
    return frozenset([declared] if isinstance(declared, str) else declared)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "string")


def _union(shapes: list[Shape]) -> Shape:
    """anyOf/oneOf: the value is one of the branches."""
    union = Shape()
    if any(s.types is None for s in shapes):
        union.types = None
    else:
        union.types = frozenset().union(*(s.types for s in shapes))
    valued = [s for s in shapes if s.types != frozenset({"null"})]
    if valued and all(s.enum is not None for s in valued):
        union.enum = [value for s in valued for value in s.enum]
    if len(valued) == 1:
        union.bounds, union.pattern = valued[0].bounds, valued[0].pattern
    objects = [s for s in valued if s.properties]
    for s in objects:
        for name, schema in s.properties.items():
            union.properties.setdefault(name, schema)
    if objects:
        # Guaranteed only when every object branch requires it.
        union.required = frozenset.intersection(*(s.required for s in objects))
    union.items = next((s.items for s in valued if s.items is not None), None)
    union.values = next((s.values for s in valued if s.values is not None), None)
    return union


def _merge_all_of(shape: Shape, part: Shape) -> None:
    if part.types is not None:
        shape.types = part.types if shape.types is None else shape.types & part.types
    if part.enum is not None:
        shape.enum = part.enum if shape.enum is None else [v for v in shape.enum if v in part.enum]
    shape.bounds = {**part.bounds, **shape.bounds}
    shape.pattern = shape.pattern or part.pattern
    for name, schema in part.properties.items():
        shape.properties.setdefault(name, schema)
    shape.required = shape.required | part.required
    shape.items = shape.items if shape.items is not None else part.items
    shape.values = shape.values if shape.values is not None else part.values


def _accepts(types: frozenset[str] | None, kind: str) -> bool:
    if types is None:
        return True
    return kind in types or (kind == "integer" and "number" in types)


def _type_text(types: frozenset[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types)) or "nothing"


def _value_text(value: Any) -> str:
    return "none" if value is _UNSET else json.dumps(value, sort_keys=True)


def _field_label(path: str) -> str:
    return f"field {path}" if path else "body"


class _Diff:
    def __init__(self, old: dict, new: dict) -> None:
        self.old, self.new = _Walker(old), _Walker(new)
        self.findings: list[str] = []

    def add(self, finding: str) -> None:
        if finding not in self.findings:
            self.findings.append(finding)

    # --- schemas ------------------------------------------------------------------------------

    def schemas(
        self,
        where: str,
        label,
        path: str,
        old: Any,
        new: Any,
        *,
        request: bool,
        seen: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
    ) -> None:
        """Compare the schema of one value. ``request``: the client sends it (it must accept at
        least as much as before); otherwise the client reads it (it may hold no more than
        before). ``label(path)`` names the value in findings."""
        old_shape, old_seen = self.old.shape(old, seen[0])
        new_shape, new_seen = self.new.shape(new, seen[1])
        subject = label(path)
        sender, reader = (old_shape, new_shape) if request else (new_shape, old_shape)
        # Every kind of value the sender may use must still be taken by the reader.
        kinds = ALL_TYPES if sender.types is None else sender.types
        if not all(_accepts(reader.types, kind) for kind in kinds):
            self.add(
                f"{where}: {subject} type changed: "
                f"{_type_text(old_shape.types)} -> {_type_text(new_shape.types)}"
            )
        if old_shape.enum is not None:
            new_values = None if new_shape.enum is None else set(map(_key, new_shape.enum))
            for value in old_shape.enum:
                if new_values is not None and _key(value) not in new_values:
                    self.add(f"{where}: {subject} enum value {_value_text(value)} removed")
        elif request and new_shape.enum is not None:
            self.add(f"{where}: {subject} enum added")
        self.bounds(where, subject, old_shape, new_shape, request=request)
        if request and new_shape.pattern and new_shape.pattern != old_shape.pattern:
            old_pattern = _UNSET if old_shape.pattern is None else old_shape.pattern
            self.add(
                f"{where}: {subject} pattern narrowed: "
                f"{_value_text(old_pattern)} -> {_value_text(new_shape.pattern)}"
            )
        self.properties(where, label, path, old_shape, new_shape, request, (old_seen, new_seen))
        if old_shape.items is not None and new_shape.items is not None:
            self.schemas(
                where,
                label,
                f"{path}[]",
                old_shape.items,
                new_shape.items,
                request=request,
                seen=(old_seen, new_seen),
            )
        if old_shape.values is not None and new_shape.values is not None:
            self.schemas(
                where,
                label,
                f"{path}{{}}",
                old_shape.values,
                new_shape.values,
                request=request,
                seen=(old_seen, new_seen),
            )

    def bounds(self, where: str, subject: str, old: Shape, new: Shape, *, request: bool) -> None:
        for keyword, upper in BOUNDS:
            before, after = old.bounds.get(keyword, _UNSET), new.bounds.get(keyword, _UNSET)
            if before == after:
                continue
            if after is _UNSET:
                stricter = False
            elif before is _UNSET:
                stricter = True
            else:
                stricter = after < before if upper else after > before
            if request and stricter:
                word = "narrowed"
            elif not request and not stricter:
                word = "loosened"
            else:
                continue
            self.add(
                f"{where}: {subject} {keyword} {word}: "
                f"{_value_text(before)} -> {_value_text(after)}"
            )

    def properties(self, where, label, path, old: Shape, new: Shape, request: bool, seen) -> None:
        prefix = f"{path}." if path else ""
        if request:
            for name in new.properties:
                if name in new.required and name not in old.properties:
                    self.add(f"{where}: new required {label(prefix + name)}")
                elif name in new.required and name not in old.required:
                    self.add(f"{where}: {label(prefix + name)} became required")
        else:
            for name in old.properties:
                if name not in new.properties:
                    self.add(f"{where}: {label(prefix + name)} removed")
                elif name in old.required and name not in new.required:
                    self.add(f"{where}: {label(prefix + name)} became optional")
        for name in [name for name in old.properties if name in new.properties]:
            self.schemas(
                where,
                label,
                prefix + name,
                old.properties[name],
                new.properties[name],
                request=request,
                seen=seen,
            )

    # --- operations ---------------------------------------------------------------------------

    def document(self) -> list[str]:
        old_paths = _paths(self.old.document)
        new_paths = _paths(self.new.document)
        for key, (old_path, old_item) in old_paths.items():
            if key not in new_paths:
                self.add(f"{old_path}: path removed")
                continue
            new_path, new_item = new_paths[key]
            for method in METHODS:
                if method not in old_item:
                    continue
                where = f"{method.upper()} {old_path}"
                if method not in new_item:
                    self.add(f"{where}: operation removed")
                    continue
                self.operation(where, (old_path, old_item), (new_path, new_item), method)
        return self.findings

    def operation(self, where: str, old: tuple[str, dict], new: tuple[str, dict], method: str):
        old_op, new_op = old[1][method], new[1][method]
        if _secured(self.new.document, new_op) and not _secured(self.old.document, old_op):
            self.add(f"{where}: authentication now required")
        self.parameters(where, old, new, method)
        self.request_body(where, old_op.get("requestBody"), new_op.get("requestBody"))
        old_responses = old_op.get("responses") or {}
        new_responses = new_op.get("responses") or {}
        for status, old_response in old_responses.items():
            if status not in new_responses:
                self.add(f"{where} {status}: response removed")
                continue
            old_response, _ = self.old.resolve(old_response, frozenset())
            new_response, _ = self.new.resolve(new_responses[status], frozenset())
            old_content = (old_response or {}).get("content") or {}
            new_content = (new_response or {}).get("content") or {}
            for media_type, old_media in old_content.items():
                if media_type not in new_content:
                    self.add(f"{where} {status}: content type {media_type} removed")
                    continue
                self.schemas(
                    f"{where} {status}",
                    _field_label,
                    "",
                    (old_media or {}).get("schema"),
                    (new_content[media_type] or {}).get("schema"),
                    request=False,
                )

    def parameters(self, where: str, old: tuple[str, dict], new: tuple[str, dict], method: str):
        old_params = self._parameters(self.old, *old, method)
        new_params = self._parameters(self.new, *new, method)
        for key, param in new_params.items():
            location, name = param.get("in"), param.get("name")
            if not param.get("required"):
                continue
            if key not in old_params:
                self.add(f"{where}: new required {location} parameter {name}")
            elif not old_params[key].get("required"):
                self.add(f"{where}: {location} parameter {name} became required")
        for key in [key for key in old_params if key in new_params]:
            param = old_params[key]
            subject = f"{param.get('in')} parameter {param.get('name')}"
            self.schemas(
                where,
                lambda path, subject=subject: subject + (f" field {path}" if path else ""),
                "",
                param.get("schema"),
                new_params[key].get("schema"),
                request=True,
            )

    @staticmethod
    def _parameters(
        walker: _Walker, path: str, item: dict, method: str
    ) -> dict[tuple[str, str], dict]:
        """Parameters by (location, key): path parameters by their place in the path (their
        name is not part of the contract), headers by their name in lower case."""
        in_path = re.findall(r"\{([^}]*)\}", path)
        found: dict[tuple[str, str], dict] = {}
        for raw in [*(item.get("parameters") or ()), *(item[method].get("parameters") or ())]:
            param, _ = walker.resolve(raw, frozenset())
            if not isinstance(param, dict):
                continue
            name, location = param.get("name", ""), param.get("in", "")
            if location == "path" and name in in_path:
                name = f"#{in_path.index(name)}"
            elif location == "header":
                name = name.lower()
            found[(location, name)] = param  # an operation's own parameter wins
        return found

    def request_body(self, where: str, old: Any, new: Any) -> None:
        old_body, _ = self.old.resolve(old, frozenset())
        new_body, _ = self.new.resolve(new, frozenset())
        old_body, new_body = old_body or {}, new_body or {}
        if new_body.get("required") and not old_body.get("required"):
            self.add(f"{where}: request body became required")
        old_content = old_body.get("content") or {}
        new_content = new_body.get("content") or {}
        for media_type, old_media in old_content.items():
            if media_type not in new_content:
                if new_content:
                    self.add(f"{where}: request content type {media_type} removed")
                continue
            self.schemas(
                where,
                lambda path: f"request field {path}" if path else "request body",
                "",
                (old_media or {}).get("schema"),
                (new_content[media_type] or {}).get("schema"),
                request=True,
            )


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _paths(document: dict) -> dict[str, tuple[str, dict]]:
    """Path items by their template with parameter names left out."""
    return {
        re.sub(r"\{[^}]*\}", "{}", path): (path, item)
        for path, item in (document.get("paths") or {}).items()
        if isinstance(item, dict)
    }


def _secured(document: dict, operation: dict) -> bool:
    security = operation.get("security", document.get("security"))
    # No requirement, or an empty alternative ({}), means it may be called anonymously.
    return bool(security) and all(requirement for requirement in security)


def breaking_changes(old: dict, new: dict) -> list[str]:
    """Finding ids of the breaking changes from ``old`` to ``new``, in document order."""
    return _Diff(old, new).document()


# --- the allow list (openapi/CHANGES.md) ---------------------------------------------------------

ACCEPTED_HEADING = "accepted breaking changes"


def accepted_changes(changes_md: str, version: str) -> set[str]:
    """Finding ids accepted for ``version`` (``v2``) in a CHANGES.md: every `backticked` span
    on a bullet line under an "Accepted breaking changes" heading inside the ``## v2`` section
    (the heading's own words after ``v2`` do not matter, e.g. ``## v2 (unreleased)``)."""
    accepted: set[str] = set()
    in_version = False
    accepted_level = 0
    for line in changes_md.splitlines():
        heading = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading:
            level, text = len(heading.group(1)), heading.group(2)
            if level <= 2:
                in_version = level == 2 and re.match(rf"{re.escape(version)}\b", text) is not None
                accepted_level = 0
            elif accepted_level and level <= accepted_level:
                accepted_level = 0
            if in_version and level > 2 and text.lower().startswith(ACCEPTED_HEADING):
                accepted_level = level
            continue
        if in_version and accepted_level and re.match(r"^\s*[-*+]\s", line):
            accepted.update(re.findall(r"`([^`]+)`", line))
    return accepted


def check(
    old: dict, new: dict, allowed: set[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """(unaccepted findings, accepted findings, allow-list entries that matched nothing)."""
    findings = breaking_changes(old, new)
    allowed = allowed or set()
    refused = [f for f in findings if f not in allowed]
    accepted = [f for f in findings if f in allowed]
    unused = sorted(allowed - set(findings))
    return refused, accepted, unused


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
