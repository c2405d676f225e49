"""``turnout demo``: the embedded default.

Two sample backends (``legacy``, imitating a FastAPI service, and ``new``, its
NestJS rewrite), the proxy started with the packaged ``demo.yaml``, a seeded
traffic generator, and a live summary on stdout.
"""

from proxy.demo.backends import make_backend_app, start_backend
from proxy.demo.runner import main_demo, run_demo

__all__ = ["main_demo", "make_backend_app", "run_demo", "start_backend"]
