# image2model: one image for every process (web, worker, scheduler, release).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    DJANGO_ENV=production

WORKDIR /app

COPY requirements.txt ./
RUN pip install -r requirements.txt

# Only what the service needs: no .venv, var/, .env or tests from the build context.
COPY manage.py pyproject.toml ./
COPY image2model ./image2model
COPY apps ./apps
COPY templates ./templates
COPY static ./static

# Unprivileged user. /data is created here and owned by that user, so a named volume mounted
# there starts with the same owner.
RUN useradd --create-home --uid 1000 --user-group app \
    && mkdir -p /data \
    && chown app:app /data
USER app

EXPOSE 8000

CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "image2model.asgi:application"]
