# imagesearch: one image for the web server, the Celery workers and beat.
# Build: docker build -t imagesearch .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/data/keras \
    IMAGESEARCH_VAR_DIR=/data \
    IMAGESEARCH_STATIC_ROOT=/app/staticfiles \
    HOST=0.0.0.0

WORKDIR /app
COPY requirements.txt .
# annoy compiles a small C++ extension: the compiler is installed and removed in one layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libgomp1 \
 && pip install -r requirements.txt \
 && apt-get purge -y build-essential && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

COPY . .
# collectstatic needs a secret key to import settings; this one is used only for the build step.
RUN DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput -v 0

RUN useradd --create-home --uid 1000 imagesearch \
 && mkdir -p /data && chown -R imagesearch /data
USER imagesearch
VOLUME ["/data"]
EXPOSE 8000

# The Procfile's web entry by default (HOST=0.0.0.0 above, PORT 8000 unless set); compose
# runs the other Procfile entries (workers, beat) from the same image.
CMD ["sh", "-c", "exec gunicorn imagesearch.wsgi --bind ${HOST:-127.0.0.1}:${PORT:-8000} --workers 2 --threads 4 --timeout 120 --access-logfile -"]
