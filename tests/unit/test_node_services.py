"""The real node's cluster DNS and the kube-prometheus-stack stand-in, as objects (the real-node
tier runs them: tests/realnode)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from harness import cluster_dns, prometheus_operator
from harness.cluster import KUBERNETES_SERVICE_IP, SERVICE_CIDR
from harness.helm import kube_prometheus_stack_values


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_the_dns_address_is_a_fixed_cluster_ip_no_service_can_be_given() -> None:
    """In the service range, and in its static band (the first 256 addresses of a /16), which the
    API server hands out only when asked for by address: no Service created before CoreDNS's takes it."""
    address, network = ipaddress.ip_address(cluster_dns.CLUSTER_DNS_IP), ipaddress.ip_network(SERVICE_CIDR)
    assert address in network
    assert int(address) - int(network.network_address) < 256
    assert cluster_dns.CLUSTER_DNS_IP != KUBERNETES_SERVICE_IP
    assert cluster_dns.service()["spec"]["clusterIP"] == cluster_dns.CLUSTER_DNS_IP


def test_coredns_needs_no_capability_and_passes_restricted_pod_security() -> None:
    pod = cluster_dns.deployment({"a": "b"}, [])["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # An unprivileged port behind the Service's 53.
    assert {p["containerPort"] for p in container["ports"] if p["name"].startswith("dns")} == {
        cluster_dns.PORT
    }
    assert cluster_dns.PORT >= 1024
    assert {p["targetPort"] for p in cluster_dns.service()["spec"]["ports"]} == {cluster_dns.PORT}
    assert f".:{cluster_dns.PORT} " in cluster_dns.COREFILE
    assert pod["dnsPolicy"] == "Default"  # never its own client


def test_the_documented_values_name_a_kube_prometheus_stack_release() -> None:
    stack = prometheus_operator.Stack.from_values(yaml.safe_load(kube_prometheus_stack_values()))
    assert (stack.release, stack.namespace) == ("kps", "monitoring")
    assert stack.url == "http://kps-kube-prometheus-prometheus.monitoring:9090"


def test_values_whose_url_and_release_disagree_are_refused() -> None:
    values = {
        "prometheusUrl": "http://other-prometheus.monitoring:9090",
        "monitoring": {"labels": {"release": "kps"}},
    }
    with pytest.raises(ValueError, match="other-prometheus"):
        prometheus_operator.Stack.from_values(values)


def test_the_prometheus_selects_monitors_and_rules_by_the_release_label_everywhere() -> None:
    stack = prometheus_operator.Stack("kps", "monitoring")
    objects = prometheus_operator.prometheus_objects(stack)
    spec = by_kind(objects, "Prometheus")["spec"]
    for kind in ("serviceMonitor", "podMonitor", "probe", "rule", "scrapeConfig"):
        assert spec[f"{kind}Selector"] == {"matchLabels": {"release": "kps"}}
        assert spec[f"{kind}NamespaceSelector"] == {}
    assert spec["image"] == prometheus_operator.PROMETHEUS_IMAGE
    service = by_kind(objects, "Service")
    assert (service["metadata"]["name"], service["spec"]["ports"][0]["port"]) == (stack.prometheus, 9090)
    assert service["spec"]["selector"]["operator.prometheus.io/name"] == stack.prometheus


def test_the_operator_may_not_touch_alertmanagers_nor_nodes() -> None:
    """Its ClusterRole covers what its Prometheus controller uses and nothing more."""
    rules = by_kind(prometheus_operator.operator_objects(), "ClusterRole")["rules"]
    resources = {r for rule in rules for r in rule["resources"]}
    assert not {"alertmanagers", "thanosrulers", "prometheusagents", "nodes", "ingresses"} & resources
    assert not [rule for rule in rules if "*" in rule["verbs"] or "*" in rule["resources"]]
