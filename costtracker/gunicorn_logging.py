"""gunicorn's logger, minus access-log lines for accepted ingestion POSTs.

Ingestion clients post hundreds of batches a second; a line each buried everything else in
the log and cost the workers ~6 % of their CPU (bench/bench_ingest.py). What they send is
recorded in the data itself. Refused or failed ingestion POSTs (4xx, 5xx) and every other
request are logged as usual.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

INGEST_PATH = "/api/usage/events"


class AccessLogger(Logger):
    def access(self, resp, req, environ, request_time):
        status = getattr(resp, "status_code", None)
        if environ.get("PATH_INFO") == INGEST_PATH and isinstance(status, int) and status < 400:
            return
        super().access(resp, req, environ, request_time)
