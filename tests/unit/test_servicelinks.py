"""Service environment variables (corral.agent.servicelinks) against the kubelet's exact names and values
(``pkg/kubelet/envvars`` and ``getServiceEnvVarMap``), and their place in a container's environment."""

from __future__ import annotations

from typing import Any

import pytest

from corral.agent.environment import PodFacts, build_environment
from corral.agent.servicelinks import env_name, service_environment, service_variables

JSON = dict[str, Any]


def svc(name: str, ip: str, ports: list[tuple[str, int, str]], ns: str = "default") -> JSON:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "clusterIP": ip,
            "ports": [{"port": p, "protocol": proto, **({"name": n} if n else {})} for n, p, proto in ports],
        },
    }


# The kubelet's own test table (envvars_test.go TestFromServices), one Service at a time.
CASES = [
    (
        svc("foo-bar", "1.2.3.4", [("", 8080, "TCP")]),
        {
            "FOO_BAR_SERVICE_HOST": "1.2.3.4",
            "FOO_BAR_SERVICE_PORT": "8080",
            "FOO_BAR_PORT": "tcp://1.2.3.4:8080",
            "FOO_BAR_PORT_8080_TCP": "tcp://1.2.3.4:8080",
            "FOO_BAR_PORT_8080_TCP_PROTO": "tcp",
            "FOO_BAR_PORT_8080_TCP_PORT": "8080",
            "FOO_BAR_PORT_8080_TCP_ADDR": "1.2.3.4",
        },
    ),
    (
        svc("abc-123", "5.6.7.8", [("u-d-p", 8081, "UDP"), ("t-c-p", 8081, "TCP")]),
        {
            "ABC_123_SERVICE_HOST": "5.6.7.8",
            "ABC_123_SERVICE_PORT": "8081",
            "ABC_123_SERVICE_PORT_U_D_P": "8081",
            "ABC_123_SERVICE_PORT_T_C_P": "8081",
            "ABC_123_PORT": "udp://5.6.7.8:8081",
            "ABC_123_PORT_8081_UDP": "udp://5.6.7.8:8081",
            "ABC_123_PORT_8081_UDP_PROTO": "udp",
            "ABC_123_PORT_8081_UDP_PORT": "8081",
            "ABC_123_PORT_8081_UDP_ADDR": "5.6.7.8",
            "ABC_123_PORT_8081_TCP": "tcp://5.6.7.8:8081",
            "ABC_123_PORT_8081_TCP_PROTO": "tcp",
            "ABC_123_PORT_8081_TCP_PORT": "8081",
            "ABC_123_PORT_8081_TCP_ADDR": "5.6.7.8",
        },
    ),
    (
        svc("q-u-u-x", "9.8.7.6", [("", 8082, "TCP"), ("8083", 8083, "TCP")]),
        {
            "Q_U_U_X_SERVICE_HOST": "9.8.7.6",
            "Q_U_U_X_SERVICE_PORT": "8082",
            "Q_U_U_X_SERVICE_PORT_8083": "8083",
            "Q_U_U_X_PORT": "tcp://9.8.7.6:8082",
            "Q_U_U_X_PORT_8082_TCP": "tcp://9.8.7.6:8082",
            "Q_U_U_X_PORT_8082_TCP_PROTO": "tcp",
            "Q_U_U_X_PORT_8082_TCP_PORT": "8082",
            "Q_U_U_X_PORT_8082_TCP_ADDR": "9.8.7.6",
            "Q_U_U_X_PORT_8083_TCP": "tcp://9.8.7.6:8083",
            "Q_U_U_X_PORT_8083_TCP_PROTO": "tcp",
            "Q_U_U_X_PORT_8083_TCP_PORT": "8083",
            "Q_U_U_X_PORT_8083_TCP_ADDR": "9.8.7.6",
        },
    ),
    (svc("svrc-clusterip-none", "None", [("", 8082, "TCP")]), {}),
    (svc("svrc-clusterip-empty", "", [("", 8082, "TCP")]), {}),
    (
        svc("super-ipv6", "2001:DB8::", [("u-d-p", 8084, "UDP"), ("t-c-p", 8084, "TCP")]),
        {
            "SUPER_IPV6_SERVICE_HOST": "2001:DB8::",
            "SUPER_IPV6_SERVICE_PORT": "8084",
            "SUPER_IPV6_SERVICE_PORT_U_D_P": "8084",
            "SUPER_IPV6_SERVICE_PORT_T_C_P": "8084",
            "SUPER_IPV6_PORT": "udp://[2001:DB8::]:8084",
            "SUPER_IPV6_PORT_8084_UDP": "udp://[2001:DB8::]:8084",
            "SUPER_IPV6_PORT_8084_UDP_PROTO": "udp",
            "SUPER_IPV6_PORT_8084_UDP_PORT": "8084",
            "SUPER_IPV6_PORT_8084_UDP_ADDR": "2001:DB8::",
            "SUPER_IPV6_PORT_8084_TCP": "tcp://[2001:DB8::]:8084",
            "SUPER_IPV6_PORT_8084_TCP_PROTO": "tcp",
            "SUPER_IPV6_PORT_8084_TCP_PORT": "8084",
            "SUPER_IPV6_PORT_8084_TCP_ADDR": "2001:DB8::",
        },
    ),
    (
        svc("sctp-1", "1.2.3.4", [("", 777, "SCTP")]),
        {
            "SCTP_1_SERVICE_HOST": "1.2.3.4",
            "SCTP_1_SERVICE_PORT": "777",
            "SCTP_1_PORT": "sctp://1.2.3.4:777",
            "SCTP_1_PORT_777_SCTP": "sctp://1.2.3.4:777",
            "SCTP_1_PORT_777_SCTP_PROTO": "sctp",
            "SCTP_1_PORT_777_SCTP_PORT": "777",
            "SCTP_1_PORT_777_SCTP_ADDR": "1.2.3.4",
        },
    ),
]


@pytest.mark.parametrize(("service", "expected"), CASES, ids=[c[0]["metadata"]["name"] for c in CASES])
def test_variables_match_the_kubelet(service: JSON, expected: dict[str, str]) -> None:
    assert service_variables(service) == expected


def test_protocol_defaults_to_tcp_and_external_name_gets_nothing() -> None:
    service = svc("web", "127.96.0.10", [("http", 80, "")])
    assert service_variables(service)["WEB_PORT"] == "tcp://127.96.0.10:80"
    assert service_variables(service)["WEB_PORT_80_TCP_PROTO"] == "tcp"
    external = {
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "example.com"},
    }
    assert service_variables(external) == {}


@pytest.mark.parametrize(
    ("name", "expected"), [("foo-bar", "FOO_BAR"), ("a.b", "A.B"), ("9lives", "9LIVES"), ("web", "WEB")]
)
def test_env_name(name: str, expected: str) -> None:
    assert env_name(name) == expected


def test_only_the_pods_namespace_and_the_master_service() -> None:
    services = [
        svc("web", "127.96.0.10", [("http", 80, "TCP")], ns="shop"),
        svc("db", "127.96.0.11", [("", 5432, "TCP")], ns="other"),
        svc("kubernetes", "127.96.0.1", [("https", 443, "TCP")], ns="default"),
        svc("other-default", "127.96.0.2", [("", 1, "TCP")], ns="default"),
        svc("headless", "None", [("", 1, "TCP")], ns="shop"),
    ]
    env = service_environment(services, "shop")
    assert env["WEB_SERVICE_HOST"] == "127.96.0.10"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not [k for k in env if k.startswith(("DB_", "OTHER_DEFAULT_", "HEADLESS_"))]
    # enableServiceLinks: false keeps only the master service
    off = service_environment(services, "shop", enable_service_links=False)
    assert off == service_variables(services[2])
    # a pod in default sees default's Services
    assert "OTHER_DEFAULT_SERVICE_HOST" in service_environment(services, "default")


@pytest.mark.parametrize("order", [1, -1])
def test_namespace_kubernetes_service_shadows_the_master_one(order: int) -> None:
    services = [
        svc("kubernetes", "127.96.0.1", [("https", 443, "TCP")], ns="default"),
        svc("kubernetes", "127.96.0.50", [("https", 8443, "TCP")], ns="shop"),
    ][::order]
    env = service_environment(services, "shop")
    assert env["KUBERNETES_SERVICE_HOST"] == "127.96.0.50"
    assert env["KUBERNETES_SERVICE_PORT"] == "8443"


def test_dns_address_variable() -> None:
    assert service_environment([], "default", dns_address="127.0.0.1:5353") == {
        "CORRAL_DNS": "127.0.0.1:5353"
    }
    assert service_environment([], "default") == {}


FACTS = PodFacts(node_name="n1", host_ip="127.0.0.1", pod_ip="127.0.0.1", sandbox_dir="/tmp/sandbox")
POD: JSON = {"metadata": {"name": "p", "namespace": "shop", "uid": "u"}, "spec": {}}


def test_container_env_wins_and_may_reference_service_variables() -> None:
    services = service_environment([svc("web", "127.96.0.10", [("http", 80, "TCP")], ns="shop")], "shop")
    container: JSON = {
        "name": "main",
        "env": [
            {"name": "WEB_SERVICE_PORT", "value": "9999"},
            {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT_HTTP)/"},
        ],
    }
    env = build_environment(POD, container, FACTS, {"PORT": "20001"}, {}, {}, service_env=services)
    assert env["WEB_SERVICE_HOST"] == "127.96.0.10"
    assert env["WEB_SERVICE_PORT"] == "9999"  # the container's own env wins
    assert env["URL"] == "http://127.96.0.10:80/"
    assert env["PORT"] == "20001"
    # Order as the kubelet builds it: base, then service variables, then the container's.
    keys = list(env)
    assert keys.index("HOME") < keys.index("WEB_SERVICE_HOST") < keys.index("PORT") < keys.index("URL")


def test_corral_port_variables_win_over_a_clashing_service_variable() -> None:
    # A Service named "port" yields PORT_PORT…; a container port named "port" yields PORT_PORT too.
    services = service_environment([svc("port", "127.96.0.10", [("", 80, "TCP")], ns="shop")], "shop")
    env = build_environment(
        POD, {"name": "main"}, FACTS, {"PORT_PORT": "20005"}, {}, {}, service_env=services
    )
    assert env["PORT_PORT"] == "20005"
    assert env["PORT_SERVICE_HOST"] == "127.96.0.10"
