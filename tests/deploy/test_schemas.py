"""Every manifest of deploy/kubernetes/ against the Kubernetes OpenAPI schemas that
kubernetes-validate ships, for the versions in the Makefile's K8S_VERSIONS.

Strict mode: an unknown or misspelt field fails, as `kubectl apply --validate=strict`
would. kubernetes-validate has no schema for a CRD's kind and its CLI only warns
(exit 0) on one, so the ServiceMonitor (prometheus-operator/) is checked
structurally here instead, against the Service it must select.
"""

from __future__ import annotations

import copy

import pytest
from kubernetes_validate import utils as kv

from tests.deploy.manifests import (
    KUBERNETES,
    KUSTOMIZATION,
    OPERATOR,
    Resource,
    builtin_resources,
    find,
    kubernetes_versions,
    manifest_files,
    resources,
    yaml_files,
)


@pytest.mark.parametrize("version", kubernetes_versions())
def test_every_manifest_validates_strictly(version: str) -> None:
    checked = []
    for filename, item in builtin_resources():
        try:
            kv.validate(item, version, strict=True)
        except kv.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{filename}: {item['kind']}: {where}: {error.message}")
        checked.append(item["kind"])
    expected = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    assert expected <= set(checked), checked


def test_the_validation_rejects_a_broken_manifest() -> None:
    """Not vacuous: a misspelt field and a wrongly typed one are refused."""
    version = kubernetes_versions()[0]
    deployment = find("Deployment", "turnout")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, version, strict=True)


def test_a_crd_has_no_schema_so_the_servicemonitor_is_checked_here() -> None:
    (monitor,) = resources(OPERATOR / "servicemonitor.yaml")
    with pytest.raises(kv.SchemaNotFoundError):
        kv.validate(monitor, kubernetes_versions()[0], strict=True)
    _check_service_monitor(monitor)


def _check_service_monitor(monitor: Resource) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["name"]
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, spec
    admin = find("Service", "turnout-admin")
    labels = admin["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), (selector, labels)
    # The ServiceMonitor's selector must not also pick the proxy Service.
    proxy_labels = find("Service", "turnout")["metadata"]["labels"]
    assert not selector.items() <= proxy_labels.items()
    port_names = {port["name"] for port in admin["spec"]["ports"]}
    assert spec["endpoints"], spec
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}, endpoint
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_the_kustomize_base_lists_every_manifest_and_no_crd() -> None:
    """What `kubectl apply -k` applies is what the schema test validates: a
    manifest left out of kustomization.yaml would be neither applied nor checked."""
    listed = manifest_files()
    assert sorted(listed) == [path for path in yaml_files(KUBERNETES) if path != KUSTOMIZATION]
    for filename, item in builtin_resources():
        assert not item["apiVersion"].startswith("monitoring.coreos.com/"), filename
    assert [path.name for path in yaml_files(OPERATOR)] == ["servicemonitor.yaml"]
