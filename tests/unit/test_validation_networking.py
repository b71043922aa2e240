"""Validation and defaulting of EndpointSlice (discovery.k8s.io/v1), Ingress and IngressClass
(networking.k8s.io/v1): upstream's rules and messages for the subset Corral checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.api.defaults import apply_defaults
from corral.api.validation import validate_object, validate_update

JSON = dict[str, Any]


def messages(kind: str, obj: JSON, namespaced: bool = True) -> list[str]:
    return [f"{e.path}: {e.message()}" for e in validate_object(kind, obj, namespaced)]


def endpoint_slice(**fields: Any) -> JSON:
    base: JSON = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "default"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}, "nodeName": "node-1"}],
        "ports": [{"name": "http", "port": 20001, "protocol": "TCP"}],
    }
    base.update(fields)
    return base


def test_valid_slice_including_loopback_addresses() -> None:
    # Upstream rejects loopback endpoint IPs; Corral's endpoints are loopback by design.
    assert messages("EndpointSlice", endpoint_slice()) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"addressType": ""}, "addressType: Required value"),
        (
            {"addressType": "IPv5"},
            'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"',
        ),
        (
            {"endpoints": [{"addresses": ["fd00::1"]}]},
            'endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address',
        ),
        (
            {"endpoints": [{"addresses": ["nope"]}]},
            'endpoints[0].addresses[0]: Invalid value: "nope": must be a valid IP address',
        ),
        (
            {"endpoints": [{"addresses": []}]},
            "endpoints[0].addresses: Required value: must contain at least 1 address",
        ),
        (
            {"ports": [{"name": "http", "port": 1}, {"name": "http", "port": 2}]},
            'ports[1].name: Duplicate value: "http"',
        ),
        ({"ports": [{"name": "Bad_Name", "port": 1}]}, 'ports[0].name: Invalid value: "Bad_Name"'),
        (
            {"ports": [{"port": 70000}]},
            "ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            {"ports": [{"port": 1, "protocol": "ICMP"}]},
            'ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        ),
    ],
)
def test_invalid_slices(fields: JSON, expected: str) -> None:
    found = messages("EndpointSlice", endpoint_slice(**fields))
    assert any(m.startswith(expected) for m in found), found


def test_slice_address_type_is_immutable() -> None:
    old = endpoint_slice()
    new = copy.deepcopy(old)
    new["addressType"] = "FQDN"
    errs = validate_update("EndpointSlice", new, old)
    assert [f"{e.path}: {e.message()}" for e in errs] == [
        'addressType: Invalid value: "FQDN": field is immutable'
    ]
    same = copy.deepcopy(old)
    same["endpoints"] = []
    assert validate_update("EndpointSlice", same, old) == []


def test_slice_port_defaults() -> None:
    obj = endpoint_slice(ports=[{"port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    apply_defaults(obj)
    assert obj["ports"] == [
        {"port": 80, "name": "", "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]


def ingress(rules: Any = None, **spec: Any) -> JSON:
    body: JSON = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": dict(spec),
    }
    if rules is not None:
        body["spec"]["rules"] = rules
    return body


def http_rule(*paths: JSON, host: str | None = "a.example") -> JSON:
    rule: JSON = {"http": {"paths": list(paths)}}
    if host is not None:
        rule["host"] = host
    return rule


def path(value: str | None = "/", path_type: str | None = "Prefix", backend: Any = "default") -> JSON:
    out: JSON = {}
    if value is not None:
        out["path"] = value
    if path_type is not None:
        out["pathType"] = path_type
    out["backend"] = {"service": {"name": "web", "port": {"number": 80}}} if backend == "default" else backend
    return out


def test_valid_ingresses() -> None:
    rules = [
        http_rule(path("/"), path("/api", "Exact")),
        http_rule(path(None, "ImplementationSpecific"), host="*.b.example"),
        http_rule(path("/x", backend={"service": {"name": "web", "port": {"name": "http"}}}), host=None),
    ]
    assert messages("Ingress", ingress(rules, ingressClassName="corral")) == []
    default_only = ingress(defaultBackend={"service": {"name": "web", "port": {"number": 80}}})
    assert messages("Ingress", default_only) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (ingress(), "spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"),
        (
            ingress([http_rule(path(path_type=None))]),
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
        ),
        (
            ingress([http_rule(path(path_type="Regex"))]),
            'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: '
            '"Exact", "ImplementationSpecific", "Prefix"',
        ),
        (
            ingress([http_rule(path("api"))]),
            'spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path',
        ),
        (
            ingress([http_rule(path("/a//b", "Exact"))]),
            "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'",
        ),
        (
            ingress([http_rule(path("rel", "ImplementationSpecific"))]),
            'spec.rules[0].http.paths[0].path: Invalid value: "rel": must be an absolute path',
        ),
        (
            ingress([http_rule(path(backend={"service": {"port": {"number": 80}}}))]),
            "spec.rules[0].http.paths[0].backend.service.name: Required value",
        ),
        (
            ingress([http_rule(path(backend={"service": {"name": "web", "port": {}}}))]),
            "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
        ),
        (
            ingress(
                [http_rule(path(backend={"service": {"name": "web", "port": {"name": "h", "number": 1}}}))]
            ),
            'spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both port name & port number',
        ),
        (
            ingress([http_rule(path(backend={}))]),
            'spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required',
        ),
        (ingress([http_rule()]), "spec.rules[0].http.paths: Required value"),
        (
            ingress([http_rule(path(), host="10.0.0.1")]),
            'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
        ),
        (ingress([http_rule(path(), host="Bad_Host")]), 'spec.rules[0].host: Invalid value: "Bad_Host"'),
    ],
)
def test_invalid_ingresses(obj: JSON, expected: str) -> None:
    found = messages("Ingress", obj)
    assert any(m.startswith(expected) for m in found), found


def ingress_class(**spec: Any) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "corral"},
        "spec": spec,
    }


def test_ingress_class_rules_and_defaults() -> None:
    assert messages("IngressClass", ingress_class(controller="corral.dev/ingress"), namespaced=False) == []
    assert messages("IngressClass", ingress_class(), namespaced=False) == ["spec.controller: Required value"]
    namespaced = ingress_class(controller="c", parameters={"kind": "K", "name": "n", "scope": "Namespace"})
    assert messages("IngressClass", namespaced, namespaced=False) == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"
    ]
    unscoped = ingress_class(controller="c", parameters={"kind": "K", "name": "n"})
    apply_defaults(unscoped)
    assert unscoped["spec"]["parameters"]["scope"] == "Cluster"
    changed = ingress_class(controller="other")
    errs = validate_update("IngressClass", changed, ingress_class(controller="c"))
    assert [e.path for e in errs] == ["spec.controller"]
