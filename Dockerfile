# kinestream daemon image: the package installed from this checkout, run as a non-root user.
# Built by docker-compose.yml for both the daemon and the simulator (kinestream replay).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/kinestream
COPY pyproject.toml README.md ./
COPY src ./src
# A non-editable install: the image needs no source tree at run time. The bundled sample
# data stays readable under /opt/kinestream/src/kinestream/data for the simulator. tzdata:
# zoneinfo needs an IANA database (--timezone, UTC by default) and slim images may lack one.
# The nats extra: the same image runs the partitioned workers of the compose profile `nats`.
RUN python -m pip install ".[nats]" tzdata \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/kinestream kinestream \
    && mkdir -p /var/lib/kinestream/state \
    && chown -R kinestream:kinestream /var/lib/kinestream

USER kinestream
WORKDIR /var/lib/kinestream
# Compose sets KINESTREAM_METRICS__BIND=0.0.0.0 so Prometheus can reach the metrics port.
ENV KINESTREAM_STATE__DIR=/var/lib/kinestream/state
VOLUME ["/var/lib/kinestream/state"]
EXPOSE 9108

# Healthy = the metrics endpoint answers (it serves from the daemon's own process).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/metrics', timeout=2)"]

ENTRYPOINT ["kinestream"]
CMD ["run"]
