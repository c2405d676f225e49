# Turnout container image.
#
#   cp config/example.yaml turnout.yaml     # then edit it (see below)
#   docker build -t turnout .
#   docker run --rm -p 8080:8080 \
#       -v "$PWD/turnout.yaml:/etc/turnout/config.yaml:ro" \
#       -e TURNOUT_ADMIN_TOKEN=... turnout
#
# The config is read from /etc/turnout/config.yaml (read-only is fine); every
# key is described in docs/configuration.md. In the copy of the example:
# - backends.*.url: addresses reachable from inside the container;
#   127.0.0.1 is the container itself.
# - listen: the default 0.0.0.0:8080 already accepts connections from outside.
# - admin.listen: the default 127.0.0.1:9901 is reachable only inside the
#   container; that is enough for the HEALTHCHECK below, which calls
#   127.0.0.1:9901, so keep port 9901. To scrape /metrics from outside, set
#   `admin: {listen: 0.0.0.0:9901}` and add `-p 9901:9901`; the mutating admin
#   calls are then reachable too, guarded by TURNOUT_ADMIN_TOKEN.
# - state_file: where runtime overrides (`turnout set`, `rollback`) are kept.
#   Without it (the default) they are lost when the container stops. A
#   relative path is relative to the working directory, /var/lib/turnout,
#   writable by the `turnout` user: the example's ./turnout-state.json is
#   /var/lib/turnout/turnout-state.json. Mount a volume on /var/lib/turnout to
#   keep it across container restarts.
# `serve` drains for up to drain_timeout (default 30s) after SIGTERM: give the
# container at least that long to stop (docker stop -t 35,
# terminationGracePeriodSeconds: 35).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric uid/gid, so that USER is numeric (Kubernetes' runAsNonRoot
# can check it) and volume ownership is predictable.
RUN groupadd --system --gid 10001 turnout \
    && useradd --system --uid 10001 --gid turnout --home-dir /var/lib/turnout \
       --create-home --shell /usr/sbin/nologin turnout \
    && mkdir -p /etc/turnout

COPY pyproject.toml README.md /tmp/turnout-src/
COPY proxy/ /tmp/turnout-src/proxy/
RUN pip install --no-cache-dir /tmp/turnout-src \
    && rm -rf /tmp/turnout-src

WORKDIR /var/lib/turnout
USER 10001:10001

# 8080: proxy listener; 9901: admin API (/metrics, /healthz, /readyz, ...).
EXPOSE 8080 9901

# slim has no curl: ask /healthz with the standard library (non-2xx raises -> exit 1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2)"]

ENTRYPOINT ["turnout"]
CMD ["serve", "-c", "/etc/turnout/config.yaml"]
