"""`smtplab export --k8s`: every scenario's manifests pass the Kubernetes API schema (strict).

No cluster runs here: kubernetes-validate checks each object against the
OpenAPI schema of a Kubernetes release, unknown fields included.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lab.catalog import load_catalog
from lab.cli import main
from lab.export.k8s import manifests
from lab.topology import resolve

kubernetes_validate = pytest.importorskip("kubernetes_validate")
K8S = "1.30.0"
SCENARIOS, _ = load_catalog()


def check(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S, strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_every_scenario_renders_valid_manifests(scenario: Any) -> None:
    objects = manifests(resolve(scenario), "smtplab-node:test")
    for manifest in objects:
        check(manifest)
        assert manifest["metadata"]["labels"]["smtplab.lab"] == scenario.id
    kinds = [m["kind"] for m in objects]
    assert kinds[:2] == ["Namespace", "ConfigMap"]
    assert "default-deny" in [m["metadata"]["name"] for m in objects]
    pods = {m["metadata"]["labels"]["smtplab.node"]: m for m in objects if m["kind"] == "Pod"}
    for name, pod in pods.items():
        capabilities = pod["spec"]["containers"][0]["securityContext"]["capabilities"]
        if scenario.nodes[name].kind == "router":
            assert capabilities == {"add": ["NET_ADMIN"]}
        else:
            assert capabilities == {"drop": ["ALL"]}


def test_the_schema_check_can_fail() -> None:
    [namespace, *_] = manifests(resolve(SCENARIOS[0]), "smtplab-node:test")
    pod = next(m for m in manifests(resolve(SCENARIOS[0]), "x") if m["kind"] == "Pod")
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": "twenty-five"}]
    with pytest.raises(kubernetes_validate.ValidationError):
        check(pod)
    namespace["spec"] = {"typo": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        check(namespace)


def test_export_cli_prints_yaml_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "blocked-port-25", "--k8s", "--image", "smtplab-node:abc"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert documents[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "smtplab-blocked-port-25",
            "labels": {"smtplab.lab": "blocked-port-25"},
        },
    }
    for document in documents:
        check(document)
    images = {d["spec"]["containers"][0]["image"] for d in documents if d["kind"] == "Pod"}
    assert images == {"smtplab-node:abc"}
    assert main(["export", "blocked-port-25"]) == 2
