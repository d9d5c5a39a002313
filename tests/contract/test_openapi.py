"""The committed OpenAPI documents (openapi/) are what the code serves, and no released contract
breaks without being accepted (v1: never). Then the breaking-change checker itself, rule by rule,
on small synthetic documents."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from django.test import Client

from image2model import api
from scripts import openapi as openapi_cli
from scripts.openapi_diff import accepted_changes, breaking_changes, check
from tests.servers import ROOT

OPENAPI = ROOT / "openapi"
VERSIONS = ("v1", "v2")


def served(version: str) -> dict:
    response = Client().get(f"/api/{version}/openapi.json")
    assert response.status_code == 200, response.content
    return response.json()


def require_api(version: str) -> None:
    if getattr(api, f"api_{version}", None) is None:
        pytest.skip(f"image2model.api has no api_{version} yet")


# --- the committed documents ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_served_document_is_the_committed_one(version):
    require_api(version)
    committed = OPENAPI / f"{version}.json"
    assert committed.exists(), f"{committed} is missing: run `make openapi` and commit it"
    rendered = openapi_cli.render(served(version))
    if rendered != committed.read_text():
        diff = openapi_cli._unified(committed.read_text(), rendered, f"openapi/{version}.json")
        pytest.fail(
            f"the served document differs from the committed one:\n{diff}\nrun `make openapi`"
        )


def test_export_check_fails_on_a_stale_document_and_passes_on_a_fresh_one(tmp_path, capsys):
    for version in VERSIONS:
        if getattr(api, f"api_{version}", None) is not None:
            (tmp_path / f"{version}.json").write_text(openapi_cli.render(served(version)))
    assert openapi_cli.export(check_only=True, directory=tmp_path) == 0
    stale = json.loads((tmp_path / "v1.json").read_text())
    stale["info"]["title"] = "something else"
    (tmp_path / "v1.json").write_text(openapi_cli.render(stale))
    before = (tmp_path / "v1.json").read_text()
    assert openapi_cli.export(check_only=True, directory=tmp_path) == 1
    assert (tmp_path / "v1.json").read_text() == before, "--check must not write"
    err = capsys.readouterr().err
    assert '-    "title": "something else",' in err and "openapi/v1.json: out of date" in err


def test_make_openapi_makes_the_committed_documents_without_services():
    """`scripts/openapi.py export --check` in its own process: embedded mode, no PostgreSQL or
    Redis (their variables point at nothing), so the committed files do not depend on them."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:9/nothing",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "FAL_KEY": "set-in-the-environment",
        "DEBUG": "true",
    }
    result = subprocess.run(
        [sys.executable, "scripts/openapi.py", "export", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_copies_the_export_and_refuses_the_frozen_v1(tmp_path, monkeypatch):
    monkeypatch.setattr(openapi_cli, "OPENAPI_DIR", tmp_path)
    monkeypatch.setattr(openapi_cli, "RELEASED_DIR", tmp_path / "released")
    for version in VERSIONS:
        (tmp_path / f"{version}.json").write_text(f'{{"v": "{version}"}}\n')
    assert openapi_cli.release(["v1"]) == 1
    assert not (tmp_path / "released").exists()
    assert openapi_cli.release([]) == 0  # every version that is not frozen
    assert sorted(p.name for p in (tmp_path / "released").iterdir()) == ["v2.json"]
    assert (tmp_path / "released" / "v2.json").read_text() == '{"v": "v2"}\n'


@pytest.mark.parametrize("version", VERSIONS)
def test_no_unaccepted_breaking_change_since_the_release(version):
    current, released = OPENAPI / f"{version}.json", OPENAPI / "released" / f"{version}.json"
    require_api(version)
    if not released.exists():
        pytest.skip(f"{version} has no released baseline yet ({released.relative_to(ROOT)})")
    if version in openapi_cli.FROZEN:
        allowed: set[str] = set()  # v1 is frozen: CHANGES.md cannot accept anything for it
    else:
        allowed = accepted_changes((OPENAPI / "CHANGES.md").read_text(), version)
    refused, _, _ = check(
        json.loads(released.read_text()), json.loads(current.read_text()), allowed
    )
    assert refused == [], (
        f"breaking changes to {version} since its release"
        + (" (v1 is frozen)" if version in openapi_cli.FROZEN else " not listed in CHANGES.md")
        + ":\n"
        + "\n".join(refused)
    )


FINDING_ID = re.compile(r"^(/\S*|[A-Z]+ /\S*( [0-9X]{3}| default)?): \S.*$")


def test_the_changes_file_lists_only_finding_ids():
    text = (OPENAPI / "CHANGES.md").read_text()
    for version in VERSIONS:
        for entry in accepted_changes(text, version):
            assert FINDING_ID.match(entry), f"not a finding id in CHANGES.md: {entry!r}"


# --- the checker, rule by rule --------------------------------------------------------------------


def document(paths: dict, schemas: dict | None = None) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas or {}},
    }


def json_response(schema: dict, status: str = "200") -> dict:
    return {status: {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def operation(responses: dict | None = None, **extra) -> dict:
    return {"responses": responses or {"200": {"description": "OK"}}, **extra}


def query(name: str, schema: dict, required: bool = False) -> dict:
    return {"in": "query", "name": name, "required": required, "schema": schema}


def json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded"]},
        "eta_seconds": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "size": {"type": "integer"},
    },
    "required": ["id", "status", "eta_seconds", "progress", "size"],
}
PAGE = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["items", "next_cursor"],
}


def jobs_api(job: dict | None = None, **changes) -> dict:
    """A small API: list, get and delete jobs. ``changes`` replace parts of it."""
    list_op = operation(
        json_response({"$ref": "#/components/schemas/Page"}),
        parameters=changes.get("list_parameters", [query("limit", {"type": "integer"})]),
    )
    paths = {
        "/api/v2/jobs": {"get": list_op},
        "/api/v2/jobs/{job_id}": {
            "get": operation(
                {
                    **json_response({"$ref": "#/components/schemas/Job"}),
                    "404": {"description": "Not Found"},
                }
            ),
            "delete": operation({"204": {"description": "No Content"}}),
        },
    }
    if "paths" in changes:
        paths = changes["paths"](paths)
    return document(paths, {"Job": job or JOB, "Page": PAGE})


def with_job(**properties) -> dict:
    job = json.loads(json.dumps(JOB))
    for name, schema in properties.items():
        if schema is None:
            del job["properties"][name]
            job["required"].remove(name)
        else:
            job["properties"][name] = schema
    return job


def test_identical_documents_have_no_finding():
    assert breaking_changes(jobs_api(), jobs_api()) == []


def test_a_removed_path():
    new = jobs_api(paths=lambda p: {k: v for k, v in p.items() if k != "/api/v2/jobs/{job_id}"})
    assert breaking_changes(jobs_api(), new) == ["/api/v2/jobs/{job_id}: path removed"]


def test_a_removed_operation():
    def without_delete(paths):
        del paths["/api/v2/jobs/{job_id}"]["delete"]
        return paths

    new = jobs_api(paths=without_delete)
    assert breaking_changes(jobs_api(), new) == ["DELETE /api/v2/jobs/{job_id}: operation removed"]


def test_a_renamed_path_parameter_is_the_same_url():
    def renamed(paths):
        paths["/api/v2/jobs/{id}"] = paths.pop("/api/v2/jobs/{job_id}")
        return paths

    assert breaking_changes(jobs_api(), jobs_api(paths=renamed)) == []


def test_a_removed_response_status():
    def without_404(paths):
        del paths["/api/v2/jobs/{job_id}"]["get"]["responses"]["404"]
        return paths

    new = jobs_api(paths=without_404)
    assert breaking_changes(jobs_api(), new) == ["GET /api/v2/jobs/{job_id} 404: response removed"]


def test_a_removed_response_content_type():
    def as_problem(paths):
        response = paths["/api/v2/jobs/{job_id}"]["get"]["responses"]["200"]
        response["content"] = {"application/problem+json": response["content"]["application/json"]}
        return paths

    assert breaking_changes(jobs_api(), jobs_api(paths=as_problem)) == [
        "GET /api/v2/jobs/{job_id} 200: content type application/json removed"
    ]


def test_a_removed_response_field_is_found_through_refs_and_arrays():
    new = jobs_api(with_job(eta_seconds=None))
    assert breaking_changes(jobs_api(), new) == [
        "GET /api/v2/jobs 200: field items[].eta_seconds removed",
        "GET /api/v2/jobs/{job_id} 200: field eta_seconds removed",
    ]


def test_a_response_field_that_may_now_be_absent():
    job = with_job()
    job["required"].remove("size")
    assert breaking_changes(jobs_api(), jobs_api(job)) == [
        "GET /api/v2/jobs 200: field items[].size became optional",
        "GET /api/v2/jobs/{job_id} 200: field size became optional",
    ]


def test_a_response_field_of_another_type():
    new = jobs_api(with_job(id={"type": "integer"}))
    assert breaking_changes(jobs_api(), new) == [
        "GET /api/v2/jobs 200: field items[].id type changed: string -> integer",
        "GET /api/v2/jobs/{job_id} 200: field id type changed: string -> integer",
    ]


def test_a_response_field_widened_from_integer_to_number():
    new = jobs_api(with_job(size={"type": "number"}))
    assert "GET /api/v2/jobs/{job_id} 200: field size type changed: integer -> number" in (
        breaking_changes(jobs_api(), new)
    )


def test_a_response_field_narrowed_from_number_to_integer_is_not_breaking():
    old = jobs_api(with_job(size={"type": "number"}))
    assert breaking_changes(old, jobs_api()) == []


def test_a_response_field_that_became_nullable():
    new = jobs_api(with_job(size={"type": ["integer", "null"]}))
    assert breaking_changes(jobs_api(), new) == [
        "GET /api/v2/jobs 200: field items[].size type changed: integer -> integer|null",
        "GET /api/v2/jobs/{job_id} 200: field size type changed: integer -> integer|null",
    ]


def test_a_removed_response_enum_value():
    new = jobs_api(with_job(status={"type": "string", "enum": ["queued", "running"]}))
    assert breaking_changes(jobs_api(), new) == [
        'GET /api/v2/jobs 200: field items[].status enum value "succeeded" removed',
        'GET /api/v2/jobs/{job_id} 200: field status enum value "succeeded" removed',
    ]


def test_a_loosened_response_bound():
    new = jobs_api(with_job(progress={"type": "integer", "minimum": 0}))
    assert breaking_changes(jobs_api(), new) == [
        "GET /api/v2/jobs 200: field items[].progress maximum loosened: 100 -> none",
        "GET /api/v2/jobs/{job_id} 200: field progress maximum loosened: 100 -> none",
    ]


def list_with(*parameters) -> dict:
    return jobs_api(list_parameters=list(parameters))


def test_a_new_required_parameter():
    old = list_with(query("limit", {"type": "integer"}))
    new = list_with(
        query("limit", {"type": "integer"}),
        query("status", {"type": "string"}, required=True),
        {"in": "header", "name": "X-Tenant", "required": True, "schema": {"type": "string"}},
        query("cursor", {"type": "string"}),  # optional: fine
    )
    assert breaking_changes(old, new) == [
        "GET /api/v2/jobs: new required query parameter status",
        "GET /api/v2/jobs: new required header parameter X-Tenant",
    ]


def test_a_parameter_that_became_required():
    new = list_with(query("limit", {"type": "integer"}, required=True))
    assert breaking_changes(list_with(query("limit", {"type": "integer"})), new) == [
        "GET /api/v2/jobs: query parameter limit became required"
    ]


def test_a_narrowed_parameter_type():
    old = list_with(query("limit", {"type": "number"}), query("page", {"type": "string"}))
    new = list_with(query("limit", {"type": "integer"}), query("page", {"type": "integer"}))
    assert breaking_changes(old, new) == [
        "GET /api/v2/jobs: query parameter limit type changed: number -> integer",
        "GET /api/v2/jobs: query parameter page type changed: string -> integer",
    ]


def test_a_widened_parameter_type_is_not_breaking():
    old = list_with(query("limit", {"type": "integer"}))
    new = list_with(query("limit", {"anyOf": [{"type": "number"}, {"type": "null"}]}))
    assert breaking_changes(old, new) == []


def test_a_branch_removed_from_a_parameter_any_of():
    old = list_with(query("after", {"anyOf": [{"type": "integer"}, {"type": "string"}]}))
    new = list_with(query("after", {"anyOf": [{"type": "integer"}]}))
    assert breaking_changes(old, new) == [
        "GET /api/v2/jobs: query parameter after type changed: integer|string -> integer"
    ]


def test_a_removed_parameter_enum_value_and_an_added_enum():
    old = list_with(
        query("status", {"type": "string", "enum": ["queued", "running"]}),
        query("generator", {"type": "string"}),
    )
    new = list_with(
        query("status", {"type": "string", "enum": ["queued"]}),
        query("generator", {"type": "string", "enum": ["relief"]}),
    )
    assert breaking_changes(old, new) == [
        'GET /api/v2/jobs: query parameter status enum value "running" removed',
        "GET /api/v2/jobs: query parameter generator enum added",
    ]


def test_stricter_parameter_bounds_and_a_new_pattern():
    old = list_with(
        query("limit", {"type": "integer", "maximum": 100}),
        query("cursor", {"type": "string"}),
    )
    new = list_with(
        query("limit", {"type": "integer", "maximum": 50, "minimum": 1}),
        query("cursor", {"type": "string", "maxLength": 200, "pattern": "^[a-z]+$"}),
    )
    assert breaking_changes(old, new) == [
        "GET /api/v2/jobs: query parameter limit maximum narrowed: 100 -> 50",
        "GET /api/v2/jobs: query parameter limit minimum narrowed: none -> 1",
        "GET /api/v2/jobs: query parameter cursor maxLength narrowed: none -> 200",
        'GET /api/v2/jobs: query parameter cursor pattern narrowed: none -> "^[a-z]+$"',
    ]


def test_looser_parameter_bounds_are_not_breaking():
    old = list_with(query("limit", {"type": "integer", "maximum": 50, "minimum": 1}))
    new = list_with(query("limit", {"type": "integer", "maximum": 100}))
    assert breaking_changes(old, new) == []


CREATE = {
    "type": "object",
    "properties": {
        "generator": {"type": "string", "enum": ["relief", "tripo3d"]},
        "params": {
            "type": "object",
            "properties": {"face_limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        },
        "name": {"type": "string"},
    },
    "required": ["generator"],
}


def batches_api(body: dict | None = None, request_body: dict | None = None, **extra) -> dict:
    post = operation(
        json_response({"type": "object"}, "201"),
        requestBody=request_body or json_body(body or CREATE),
        **extra,
    )
    return document({"/api/v2/batches": {"post": post}})


def create_with(**properties) -> dict:
    body = json.loads(json.dumps(CREATE))
    for name, schema in properties.items():
        body["properties"][name] = schema
    return body


def test_a_new_required_request_field_and_one_that_became_required():
    new = create_with(team={"type": "string"})
    new["required"] = ["generator", "name", "team"]
    assert breaking_changes(batches_api(), batches_api(new)) == [
        "POST /api/v2/batches: request field name became required",
        "POST /api/v2/batches: new required request field team",
    ]


def test_a_new_required_field_in_a_nested_request_object():
    new = create_with(
        params={
            "type": "object",
            "properties": {"face_limit": {"type": "integer"}, "seed": {"type": "integer"}},
            "required": ["seed"],
        }
    )
    assert breaking_changes(batches_api(), batches_api(new)) == [
        "POST /api/v2/batches: new required request field params.seed",
        "POST /api/v2/batches: request field params.face_limit type changed: "
        "integer|null -> integer",
    ]


def test_a_removed_request_enum_value():
    new = create_with(generator={"type": "string", "enum": ["relief"]})
    assert breaking_changes(batches_api(), batches_api(new)) == [
        'POST /api/v2/batches: request field generator enum value "tripo3d" removed'
    ]


def test_a_request_body_that_became_required_and_a_removed_request_content_type():
    old = batches_api(
        request_body={
            "required": False,
            "content": {
                "application/json": {"schema": CREATE},
                "multipart/form-data": {"schema": CREATE},
            },
        }
    )
    new = batches_api(request_body=json_body(CREATE, required=True))
    assert breaking_changes(old, new) == [
        "POST /api/v2/batches: request body became required",
        "POST /api/v2/batches: request content type multipart/form-data removed",
    ]


def test_authentication_now_required():
    new = batches_api(security=[{"ApiKey": []}])
    assert breaking_changes(batches_api(), new) == [
        "POST /api/v2/batches: authentication now required"
    ]
    optional = batches_api(security=[{"ApiKey": []}, {}])
    assert breaking_changes(batches_api(), optional) == []


def test_additive_changes_are_not_breaking():
    def grown(paths):
        paths["/api/v2/generators"] = {"get": operation(json_response({"type": "array"}))}
        paths["/api/v2/jobs/{job_id}"]["post"] = operation()
        paths["/api/v2/jobs/{job_id}"]["get"]["responses"]["409"] = {"description": "Conflict"}
        return paths

    job = with_job(
        artifacts={"type": "array", "items": {"type": "object"}},  # new optional field
        status={"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
    )
    new = jobs_api(
        job,
        paths=grown,
        list_parameters=[query("limit", {"type": "integer"}), query("cursor", {"type": "string"})],
    )
    body = create_with(
        generator={"type": "string", "enum": ["relief", "tripo3d", "trellis"]},
        note={"type": "string"},
    )
    assert breaking_changes(jobs_api(), new) == []
    assert breaking_changes(batches_api(), batches_api(body)) == []


def test_recursive_schemas_end():
    node = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/N"}}},
        "required": ["children"],
    }
    old = document({"/t": {"get": operation(json_response({"$ref": "#/components/schemas/N"}))}})
    old["components"]["schemas"]["N"] = node
    new = json.loads(json.dumps(old))
    new["components"]["schemas"]["N"]["properties"]["name"] = {"type": "string"}
    assert breaking_changes(old, new) == []


# --- the allow list -------------------------------------------------------------------------------

CHANGES = """# OpenAPI contract changes

Text mentioning `DELETE /api/v2/jobs/{job_id}: operation removed` outside a list is ignored.

## v2

### Unreleased

- Jobs are deleted with their batch: `DELETE /api/v2/jobs/{job_id}: path removed` here is
  changelog, not acceptance.

#### Accepted breaking changes

- `DELETE /api/v2/jobs/{job_id}: operation removed`: jobs go with their batch.

### 2026-10-01

#### Accepted breaking changes

* `GET /api/v2/jobs 200: field items[].size removed`

#### Notes

- `GET /api/v2/jobs: new required query parameter status` is under Notes: not accepted.

## v1

#### Accepted breaking changes

- `GET /api/v2/jobs 200: field items[].eta_seconds removed`
"""


def test_the_allow_list_is_read_from_the_version_section_only():
    assert accepted_changes(CHANGES, "v2") == {
        "DELETE /api/v2/jobs/{job_id}: operation removed",
        "GET /api/v2/jobs 200: field items[].size removed",
    }
    assert accepted_changes(CHANGES, "v1") == {
        "GET /api/v2/jobs 200: field items[].eta_seconds removed"
    }
    assert accepted_changes(CHANGES, "v3") == set()


def test_an_accepted_finding_passes_and_the_others_do_not():
    def without_delete(paths):
        del paths["/api/v2/jobs/{job_id}"]["delete"]
        return paths

    new = jobs_api(with_job(eta_seconds=None), paths=without_delete)
    refused, accepted, unused = check(jobs_api(), new, accepted_changes(CHANGES, "v2"))
    assert accepted == ["DELETE /api/v2/jobs/{job_id}: operation removed"]
    assert refused == [
        "GET /api/v2/jobs 200: field items[].eta_seconds removed",
        "GET /api/v2/jobs/{job_id} 200: field eta_seconds removed",
    ]
    assert unused == ["GET /api/v2/jobs 200: field items[].size removed"]


def test_the_diff_command(tmp_path):
    def without_delete(paths):
        del paths["/api/v2/jobs/{job_id}"]["delete"]
        return paths

    old, new, changes = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "CHANGES.md"
    old.write_text(json.dumps(jobs_api()))
    new.write_text(json.dumps(jobs_api(paths=without_delete)))
    changes.write_text(CHANGES)

    def run(*args):
        return subprocess.run(
            [sys.executable, "scripts/openapi.py", "diff", *map(str, args)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = run(old, new)
    assert refused.returncode == 1
    assert "BREAKING: DELETE /api/v2/jobs/{job_id}: operation removed" in refused.stderr
    allowed = run(old, new, "--allow", changes, "--version", "v2")
    assert allowed.returncode == 0, allowed.stderr
    assert "accepted: DELETE /api/v2/jobs/{job_id}: operation removed" in allowed.stdout
    frozen = run(old, new, "--allow", changes, "--version", "v1")
    assert frozen.returncode == 1, "v1 is frozen: CHANGES.md cannot accept anything for it"
    assert run(old, old).returncode == 0
