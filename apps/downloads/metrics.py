from __future__ import annotations

from prometheus_client import Counter

SERVED_BYTES = Counter(
    "image2model_served_bytes_total", "Bytes of stored files served, by kind", ["kind"]
)
