"""One NinjaAPI per version; each app contributes routers. Wiring only."""

from __future__ import annotations

from ninja import NinjaAPI

from apps.core.api_errors import install_v1_error_handlers
from apps.core.problems import ProblemDetailsAPI, install_problem_handlers

api_v1 = NinjaAPI(
    title="image2model API",
    version="1",
    description="v1 keeps the contract of the original image2model service.",
    urls_namespace="api-v1",
)
install_v1_error_handlers(api_v1)
api_v1.add_router("/health/", "apps.console.api.router")
api_v1.add_router("/upload/", "apps.jobs.api.upload_router")
api_v1.add_router("/status/", "apps.jobs.api.status_router")
api_v1.add_router("/models/", "apps.jobs.api.models_router")
api_v1.add_router("/download/", "apps.downloads.api.router")

api_v2 = ProblemDetailsAPI(
    title="image2model API",
    version="2",
    description=(
        "v2: batches, jobs and generators as resources. Errors are RFC 9457 problem details "
        "(application/problem+json). Guide: docs/api-v2.md."
    ),
    urls_namespace="api-v2",
)
install_problem_handlers(api_v2)
api_v2.add_router("/batches", "apps.jobs.api_v2.batches_router")
api_v2.add_router("/jobs", "apps.jobs.api_v2.jobs_router")
api_v2.add_router("/generators", "apps.jobs.api_v2.generators_router")
