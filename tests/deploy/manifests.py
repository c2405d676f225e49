"""deploy/kubernetes/ as data: every resource of every manifest, and the config inside."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from proxy.config.loader import parse_config
from proxy.config.models import Config

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# Resources of the Prometheus Operator's CRDs: no built-in schema to validate against.
OPERATOR = KUBERNETES / "prometheus-operator"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
MAKEFILE = ROOT / "Makefile"
DOCKERFILE = ROOT / "Dockerfile"

Resource = dict[str, Any]


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions the manifests are validated for: the Makefile's
    K8S_VERSIONS, so that `make lint` and these tests cannot drift apart."""
    found = re.search(r"^K8S_VERSIONS\s*:?=\s*(.+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert found, "Makefile: K8S_VERSIONS not found"
    return found.group(1).split()


def yaml_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def manifest_files() -> list[Path]:
    """The files of the kustomize base (`kubectl apply -k deploy/kubernetes/`)."""
    listed: list[str] = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    return [KUBERNETES / name for name in listed]


def resources(path: Path) -> list[Resource]:
    return [item for item in yaml.safe_load_all(path.read_text()) if item]


def builtin_resources() -> list[tuple[str, Resource]]:
    """(file name, resource) for every resource of the manifests applied as they are."""
    return [(path.name, item) for path in manifest_files() for item in resources(path)]


def find(kind: str, name: str) -> Resource:
    for _, item in builtin_resources():
        if item["kind"] == kind and item["metadata"]["name"] == name:
            return item
    raise AssertionError(f"no {kind} {name} in {KUBERNETES}")


def config_text() -> str:
    """The Turnout config file the ConfigMap holds."""
    text: str = find("ConfigMap", "turnout-config")["data"]["config.yaml"]
    return text


def config() -> Config:
    return parse_config(config_text(), "configmap.yaml")


def container(deployment: Resource) -> Resource:
    containers: list[Resource] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, containers
    return containers[0]


def port_number(container_spec: Resource, name: str) -> int:
    for port in container_spec["ports"]:
        if port["name"] == name:
            number: int = port["containerPort"]
            return number
    raise AssertionError(f"container has no port named {name}")
