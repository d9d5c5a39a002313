"""Python client and CLI for the image2model v2 API (photo to 3D model).

>>> from image2model_client import Client
>>> with Client("http://127.0.0.1:8000", "i2m_...") as client:
...     batch = client.create_batch(["chair.jpg"], generator="relief")
...     batch = client.wait_for_batch(batch.id)
...     client.download_batch(batch, "models/")
"""

from image2model_client._http import RetryInfo, RetryPolicy, parse_retry_after
from image2model_client._version import __version__
from image2model_client.client import AsyncClient, Client
from image2model_client.errors import (
    ApiError,
    BadRequest,
    ChecksumMismatch,
    ConfigurationError,
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    Image2ModelError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    ValidationError,
)
from image2model_client.models import (
    Artifact,
    Batch,
    Counts,
    Event,
    Generator,
    GeneratorParam,
    Job,
    JobError,
    Page,
)

__all__ = [
    "ApiError",
    "Artifact",
    "AsyncClient",
    "BadRequest",
    "Batch",
    "ChecksumMismatch",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Counts",
    "Event",
    "FieldError",
    "Forbidden",
    "Generator",
    "GeneratorParam",
    "Gone",
    "Image2ModelError",
    "Job",
    "JobError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RateLimited",
    "RetryInfo",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "__version__",
    "parse_retry_after",
]
