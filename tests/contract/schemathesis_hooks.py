"""schemathesis hooks for tests/contract/test_schemathesis.py (loaded by the `st` process through
SCHEMATHESIS_HOOKS; no Django here).

Generated ids almost never name an existing object, so on their own they test the 404s only.
Every other request of an operation gets real ids instead (a finished batch with its model, a
queued batch, their jobs and files, from CONTRACT_KNOWN), so the success answers are checked
against the schema too. The swap happens in ``before_call``: schemathesis then re-validates the
case, so a request made valid by the swap is no longer treated as a negative one.

Not swapped: DELETE requests (a deleted known batch would turn every later request for it into
a 404; deleting is tested on the batches the stateful phase creates), and the stateful phase,
whose ids come from the responses it links.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import schemathesis

KNOWN: dict[str, str] = json.loads(os.environ.get("CONTRACT_KNOWN", "{}"))
VERSION = os.environ.get("CONTRACT_VERSION", "v1")
_calls: Counter[str] = Counter()


def real_values(version: str, path: str, name: str, known: dict[str, str]) -> list[str]:
    """Real values for the path parameter ``name`` of the operation at ``path``."""
    batches = [known["finished_batch"], known["queued_batch"]]
    jobs = [known["finished_job"], known["queued_job"]]
    if version == "v1":
        # v1's names mean different things in different paths (docs/api.md, Identifiers).
        if name == "token":
            return [known["direct_token"]]
        if name == "filename":
            return [known["model_filename"]]
        if path.startswith(("/api/v1/models/job/", "/api/v1/status/jobs/")):
            return jobs
        return batches  # task_id, and job_id under /download/
    if name == "filename":
        return [known["model_filename"]]
    if path.startswith("/api/v2/batches/"):
        return batches
    if path.startswith("/api/v2/jobs/"):
        return jobs
    return []


@schemathesis.hook
def before_call(context, case, kwargs):
    if not KNOWN or case.method.upper() == "DELETE":
        return
    meta = case.meta
    if meta is not None and meta.phase.name == "stateful":
        return
    label = f"{case.method} {case.path}"
    _calls[label] += 1
    turn = _calls[label]
    if turn % 2:
        return  # odd turns: the generated values as they are
    for name in list(case.path_parameters or {}):
        values = real_values(VERSION, case.path, name, KNOWN)
        if values:
            case.path_parameters[name] = values[(turn // 2) % len(values)]
    if isinstance(case.body, dict) and "file_id" in case.body:
        files = [KNOWN["finished_file"], KNOWN["queued_file"]]
        case.body["file_id"] = files[(turn // 2) % len(files)]
