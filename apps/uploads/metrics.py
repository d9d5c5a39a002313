from __future__ import annotations

from prometheus_client import Counter

UPLOADED_BYTES = Counter("image2model_uploaded_bytes_total", "Bytes of images accepted")
UPLOADED_FILES = Counter("image2model_uploaded_files_total", "Images accepted")
