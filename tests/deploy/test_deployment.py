"""What the manifests promise Turnout, checked against Turnout itself: the config in
the ConfigMap passes `turnout check`, and the Deployment's probes, ports, grace
period, user and mounts agree with that config and with the Dockerfile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from proxy.config.state_store import parse_state_store
from tests.deploy.manifests import (
    DOCKERFILE,
    config,
    config_text,
    container,
    find,
    port_number,
)

CONFIG_PATH = "/etc/turnout/config.yaml"


def test_the_configmap_config_passes_turnout_check(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text())
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert ": ok: " in result.stdout, result.stdout
    assert "warning" not in result.stderr, result.stderr


def test_the_admin_api_listens_where_probes_and_prometheus_reach_it() -> None:
    admin = config().admin
    assert admin.listen.host == "0.0.0.0"
    deployment = find("Deployment", "turnout")
    spec = container(deployment)
    assert port_number(spec, "admin") == admin.listen.port
    assert port_number(spec, "http") == config().listen.port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(admin.listen.port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_three_replicas_with_probes_on_the_admin_port() -> None:
    deployment = find("Deployment", "turnout")
    assert deployment["spec"]["replicas"] == 3
    spec = container(deployment)
    readiness = spec["readinessProbe"]["httpGet"]
    liveness = spec["livenessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "admin")
    assert (liveness["path"], liveness["port"]) == ("/healthz", "admin")


def test_the_grace_period_outlasts_the_pre_stop_pause_and_the_drain() -> None:
    """The grace period counts from the start of preStop: a SIGKILL before
    preStop + drain_timeout would cut requests still draining."""
    deployment = find("Deployment", "turnout")
    pod = deployment["spec"]["template"]["spec"]
    sleep = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and len(sleep) == 2, sleep
    pause = float(sleep[1])
    assert pause > 0
    assert pod["terminationGracePeriodSeconds"] > pause + config().drain_timeout


def test_the_pod_runs_as_the_images_non_root_user() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert user, "Dockerfile: no numeric USER"
    deployment = find("Deployment", "turnout")
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (
        int(user.group(1)),
        int(user.group(2)),
    )
    assert security["runAsUser"] != 0
    assert container(deployment)["securityContext"]["allowPrivilegeEscalation"] is False


def test_resources_are_requested() -> None:
    resources = container(find("Deployment", "turnout"))["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert "memory" in resources["limits"]


def test_the_configmap_is_mounted_as_a_directory_so_that_reloads_see_changes() -> None:
    """A subPath mount never sees a ConfigMap update; the directory mount's
    symlink swap is what the config watcher reloads on."""
    deployment = find("Deployment", "turnout")
    spec = container(deployment)
    assert spec["args"][-2:] == ["-c", CONFIG_PATH]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (mount,) = [
        mount
        for mount in spec["volumeMounts"]
        if volumes[mount["name"]].get("configMap", {}).get("name") == "turnout-config"
    ]
    assert mount["mountPath"] == str(Path(CONFIG_PATH).parent)
    assert "subPath" not in mount


def test_the_shared_state_store_is_the_redis_of_the_base() -> None:
    """Three replicas share one state: state_store names the Service and port of
    redis.yaml (a URL that no Service answers would leave every pod unready)."""
    address = parse_state_store(str(config().state_store))
    host, _, port = address.url.removeprefix("redis://").partition("/")[0].partition(":")
    service = find("Service", host)["spec"]
    assert int(port) in {item["port"] for item in service["ports"]}
    redis = find("Deployment", host)
    assert service["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert config().state_file is None  # not used with a state_store: not set, not mounted


def test_the_admin_token_comes_from_a_secret_under_token_env() -> None:
    token_env = config().admin.token_env
    env = {item["name"]: item for item in container(find("Deployment", "turnout"))["env"]}
    assert token_env in env
    assert "secretKeyRef" in env[token_env]["valueFrom"]


def test_services_and_the_budget_select_the_pods() -> None:
    deployment = find("Deployment", "turnout")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {port["name"] for port in container(deployment)["ports"]}
    for name in ("turnout", "turnout-admin"):
        service = find("Service", name)["spec"]
        assert service["selector"].items() <= pod_labels.items(), name
        assert {port["targetPort"] for port in service["ports"]} <= ports, name
    budget = find("PodDisruptionBudget", "turnout")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["maxUnavailable"] < deployment["spec"]["replicas"]
