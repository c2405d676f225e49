# Turnout container image.
#
#   docker build -t turnout .
#   docker run --rm -p 8080:8080 -p 9901:9901 \
#       -v "$PWD/config/turnout.yaml:/etc/turnout/config.yaml:ro" \
#       -e TURNOUT_ADMIN_TOKEN=... turnout
#
# The config is mounted at /etc/turnout/config.yaml (read-only is fine).
# Inside a container the config must listen on 0.0.0.0, e.g.
#   listen: 0.0.0.0:8080
#   admin: {listen: 0.0.0.0:9901}     # for Prometheus scraping from outside
# state_file / discrepancy_log default to the working directory
# /var/lib/turnout, writable by the `turnout` user; mount a volume there to keep
# runtime overrides and canary progress across container restarts.
# `serve` drains for up to drain_timeout (default 30s) after SIGTERM: give the
# container at least that long to stop (docker stop -t 35,
# terminationGracePeriodSeconds: 35).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system turnout \
    && useradd --system --gid turnout --home-dir /var/lib/turnout --create-home \
       --shell /usr/sbin/nologin turnout \
    && mkdir -p /etc/turnout

WORKDIR /tmp/turnout-src
COPY pyproject.toml README.md ./
COPY proxy/ ./proxy/
RUN pip install --no-cache-dir . \
    && cd / && rm -rf /tmp/turnout-src

WORKDIR /var/lib/turnout
USER turnout

# 8080: proxy listener; 9901: admin API (/metrics, /healthz, /readyz, ...).
EXPOSE 8080 9901

# slim has no curl: ask /healthz with the standard library (non-2xx raises -> exit 1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2)"]

ENTRYPOINT ["turnout"]
CMD ["serve", "-c", "/etc/turnout/config.yaml"]
