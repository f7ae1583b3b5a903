"""A scenario's lab as Kubernetes manifests: `smtplab export SCENARIO --k8s`.

The rendering of `docs/kubernetes-backend.md`, on paper only (no cluster runs
here): one namespace per lab, one pod per node from the same node image and
the same `python3 -m lab.nodes <role> <config>` command as docker, the node
configs in a ConfigMap, the router a pod with NET_ADMIN, a Service per server
so the lab DNS's names have stable targets, and NetworkPolicies for isolation
(default deny, then traffic only between members of the same lab network:
each scenario network becomes a pod label). Every object carries the lab's
labels, as docker objects do.
"""

from __future__ import annotations

import re
from typing import Any

from lab.runtime.docker.commands import node_command
from lab.runtime.labels import LAB
from lab.topology import NodePlan, Topology

CONFIG_DIR = "/etc/smtplab"
NODE = "smtplab.node"
KIND = "smtplab.kind"
NETWORK_LABEL = "network.smtplab/"  # + network name: "member" on pods of that network


def _name(text: str) -> str:
    """A DNS-1123 label from any id."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63] or "x"


def _pod(node: NodePlan, namespace: str, lab: str, image: str) -> dict[str, Any]:
    labels = {LAB: lab, NODE: node.name, KIND: node.kind}
    labels |= {f"{NETWORK_LABEL}{_name(network)}": "member" for network in node.addresses}
    container: dict[str, Any] = {
        "name": _name(node.name),
        "image": image,
        "command": node_command(node, f"{CONFIG_DIR}/{node.name}.json"),
        "volumeMounts": [{"name": "configs", "mountPath": CONFIG_DIR, "readOnly": True}],
        "ports": [{"containerPort": port, "protocol": "TCP"} for port in node.tcp_ports],
        # Only the router changes packet filtering; every other node runs unprivileged.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN"]} if node.kind == "router" else {"drop": ["ALL"]},
        },
    }
    if node.tcp_ports:  # the same readiness as docker's: the port answers
        container["readinessProbe"] = {
            "tcpSocket": {"port": node.tcp_ports[0]},
            "periodSeconds": 1,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": _name(node.name), "namespace": namespace, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "hostname": _name((node.hostname or node.name).split(".")[0]),
            "containers": [container],
            "volumes": [{"name": "configs", "configMap": {"name": "node-configs"}}],
        },
    }


def _service(node: NodePlan, namespace: str, lab: str) -> dict[str, Any]:
    ports = [
        {"name": f"tcp-{port}", "port": port, "targetPort": port, "protocol": "TCP"}
        for port in node.tcp_ports
    ]
    if node.kind == "dns":
        ports.append({"name": "udp-53", "port": 53, "targetPort": 53, "protocol": "UDP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": _name(node.name), "namespace": namespace, "labels": {LAB: lab}},
        "spec": {"selector": {LAB: lab, NODE: node.name}, "ports": ports},
    }


def _policies(topology: Topology, namespace: str, lab: str) -> list[dict[str, Any]]:
    everything = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policies = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": namespace, "labels": {LAB: lab}},
            "spec": everything,
        }
    ]
    for network in topology.networks:
        members = {"matchLabels": {f"{NETWORK_LABEL}{_name(network)}": "member"}}
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": f"network-{_name(network)}",
                    "namespace": namespace,
                    "labels": {LAB: lab},
                },
                "spec": {
                    "podSelector": members,
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": members}]}],
                    "egress": [{"to": [{"podSelector": members}]}],
                },
            }
        )
    return policies


def manifests(topology: Topology, image: str) -> list[dict[str, Any]]:
    """Every object of the lab, in the order `kubectl apply` needs them."""
    lab = _name(topology.scenario.id)
    namespace = f"smtplab-{lab}"[:63]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {LAB: lab}},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "node-configs", "namespace": namespace, "labels": {LAB: lab}},
            "data": {
                f"{node.name}.json": node.config.model_dump_json()
                for node in topology.nodes.values()
            },
        },
        *_policies(topology, namespace, lab),
    ]
    for node in topology.nodes.values():
        if not node.running:  # a switched-off host: no pod, so connects to it fail
            continue
        objects.append(_pod(node, namespace, lab, image))
        if node.kind in ("dns", "relay", "mx"):
            objects.append(_service(node, namespace, lab))
    return objects


__all__ = ["manifests"]
