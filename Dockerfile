# The Junction image for the distributed mode: the same image runs the API (uvicorn), Celery
# workers, beat and flower; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# bubblewrap is the sandbox of `code` tasks (JUNCTION_CODE_SANDBOX=bwrap).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The lock: every package, transitive ones included, pinned and checked against its hashes
# (scripts/lock compiles requirements.txt from requirements.in).
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt

COPY . .
RUN useradd --create-home --uid 1000 junction \
    && mkdir -p /app/staticfiles \
    && chown -R junction:junction /app/staticfiles
USER junction

ENV PORT=8000
EXPOSE 8000
# The Procfile's `web` command (ASGI: a caller waiting with `Prefer: wait` holds no thread).
CMD ["sh", "-c", "exec uvicorn config.asgi:application --host 0.0.0.0 --port $PORT --workers ${WEB_CONCURRENCY:-2} --no-access-log"]
