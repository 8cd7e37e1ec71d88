# Production image: gunicorn (gthread workers, so long streamed proxy calls are not killed)
# behind whitenoise for static files, running as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings to load; these throwaway values never reach a running container.
RUN SECRET_KEY=build-only ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktYnVpbGQtb25seS1rZXktISE= \
    python manage.py collectstatic --noinput --verbosity 0 \
 && useradd --create-home --uid 10001 app \
 && chown -R app:app /app
USER app

EXPOSE 8000
# The worker service overrides this with `python manage.py qcluster`.
# Workers, threads, timeouts and logging come from gunicorn.conf.py (WEB_WORKERS, WEB_THREADS).
CMD ["gunicorn", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", \
     "costtracker.wsgi:application"]
