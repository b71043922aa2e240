"""Node authorization decisions (apiserver/nodeauth.py): what system:node:<name> may do. Table tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.api.configrefs import CONFIG_PINS
from corral.apiserver.nodeauth import Attributes, Need, decide, forbidden_message, http_verb, needs

NODE = "n1"
USER = "system:node:n1"


def attrs(verb: str, resource: str, name: str | None = None, *, group: str = "", namespace: str | None = None,
          sub: str | None = None) -> Attributes:  # fmt: skip
    return Attributes(USER, verb, group, resource, namespace, name, sub)


def pod(
    node: str | None, spec: dict[str, Any] | None = None, pins: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "default"}
    if pins:
        meta["annotations"] = {CONFIG_PINS: json.dumps(pins)}
    return {"metadata": meta, "spec": {**(spec or {}), **({"nodeName": node} if node else {})}}


READS = [
    attrs("list", "pods"),
    attrs("watch", "pods"),
    attrs("get", "pods", "p", namespace="default"),
    attrs("get", "nodes", "n2"),
    attrs("list", "nodes"),
    attrs("watch", "services", namespace="default"),
    attrs("list", "endpointslices", group="discovery.k8s.io"),
    attrs("watch", "ingresses", group="networking.k8s.io"),
    attrs("get", "namespaces", "default"),
]


@pytest.mark.parametrize("request_", READS, ids=lambda a: f"{a.verb}-{a.resource}")
def test_reads_a_node_needs_are_allowed(request_: Attributes) -> None:
    assert needs(NODE, request_) is Need.NOTHING
    assert decide(NODE, request_).allowed


@pytest.mark.parametrize(
    ("request_", "body_name", "allowed"),
    [
        (attrs("create", "nodes"), "n1", True),
        (attrs("create", "nodes"), "n2", False),
        (attrs("update", "nodes", "n1", sub="status"), None, True),
        (attrs("patch", "nodes", "n1"), None, True),
        (attrs("patch", "nodes", "n2"), None, False),
        (attrs("update", "nodes", "n2", sub="status"), None, False),
        (attrs("delete", "nodes", "n2"), None, False),
        (attrs("deletecollection", "nodes"), None, False),
        (attrs("create", "leases", group="coordination.k8s.io", namespace="kube-node-lease"), "n1", True),
        (attrs("create", "leases", group="coordination.k8s.io", namespace="kube-node-lease"), "n2", False),
        (
            attrs("update", "leases", "n1", group="coordination.k8s.io", namespace="kube-node-lease"),
            None,
            True,
        ),
        (attrs("get", "leases", "n1", group="coordination.k8s.io", namespace="kube-node-lease"), None, True),
        (
            attrs("update", "leases", "n2", group="coordination.k8s.io", namespace="kube-node-lease"),
            None,
            False,
        ),
        (attrs("update", "leases", "n1", group="coordination.k8s.io", namespace="kube-system"), None, False),
        (attrs("list", "leases", group="coordination.k8s.io", namespace="kube-node-lease"), None, False),
    ],
)
def test_a_node_writes_only_its_own_node_and_lease(
    request_: Attributes, body_name: str | None, allowed: bool
) -> None:
    if request_.verb == "create":
        assert needs(NODE, request_) is Need.BODY_NAME
    assert decide(NODE, request_, body_name=body_name).allowed is allowed


def test_another_nodes_write_is_refused_with_noderestrictions_message() -> None:
    request_ = attrs("patch", "nodes", "a")
    decision = decide("b", Attributes("system:node:b", "patch", "", "nodes", None, "a", None))
    assert not decision.allowed
    assert forbidden_message(request_, decision.reason) == (
        'nodes "a" is forbidden: node "b" is not allowed to modify node "a"'
    )


@pytest.mark.parametrize(
    ("request_", "bound_to", "allowed"),
    [
        (attrs("update", "pods", "p", namespace="default", sub="status"), "n1", True),
        (attrs("patch", "pods", "p", namespace="default", sub="status"), "n1", True),
        (attrs("update", "pods", "p", namespace="default", sub="status"), "n2", False),
        (attrs("patch", "pods", "p", namespace="default", sub="status"), None, False),
        (attrs("delete", "pods", "p", namespace="default"), "n1", True),
        (attrs("delete", "pods", "p", namespace="default"), "n2", False),
        (attrs("patch", "pods", "p", namespace="default"), "n1", True),
        (attrs("patch", "pods", "p", namespace="default"), "n2", False),
        (attrs("create", "pods", "p", namespace="default", sub="binding"), "n1", False),
        (attrs("create", "pods", "p", namespace="default", sub="eviction"), "n1", False),
    ],
)
def test_a_node_writes_only_pods_bound_to_it(
    request_: Attributes, bound_to: str | None, allowed: bool
) -> None:
    assert needs(NODE, request_) is Need.POD
    assert decide(NODE, request_, pod=pod(bound_to)).allowed is allowed


def test_pod_status_refusal_message() -> None:
    request_ = attrs("patch", "pods", "p", namespace="default", sub="status")
    decision = decide(NODE, request_, pod=pod("n2"))
    assert forbidden_message(request_, decision.reason) == (
        'pods "p" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself'
    )


POD_SPEC = {
    "containers": [
        {
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "env-cm"}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
        }
    ],
    "volumes": [
        {"name": "v", "secret": {"secretName": "vol-secret"}},
        {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}]}},
    ],
}


@pytest.mark.parametrize(
    ("resource", "name", "allowed"),
    [
        ("secrets", "env-secret", True),
        ("secrets", "vol-secret", True),
        ("configmaps", "env-cm", True),
        ("configmaps", "proj-cm", True),
        ("configmaps", "env-cm-1a2b3c", True),  # the pinned snapshot the pod reads
        ("secrets", "other", False),
        ("configmaps", "env-secret", False),  # a name referenced as the other kind
        ("secrets", "env-cm", False),
    ],
)
def test_secrets_and_configmaps_only_when_a_pod_on_the_node_references_them(
    resource: str, name: str, allowed: bool
) -> None:
    request_ = attrs("get", resource, name, namespace="default")
    assert needs(NODE, request_) is Need.NODE_PODS
    bound = [pod("n1", POD_SPEC, pins={"ConfigMap/env-cm": "env-cm-1a2b3c"})]
    assert decide(NODE, request_, node_pods=bound).allowed is allowed
    assert not decide(NODE, request_, node_pods=[]).allowed


def test_secret_refusals_use_the_node_authorizers_words() -> None:
    got = attrs("get", "secrets", "s", namespace="default")
    assert forbidden_message(got, decide(NODE, got).reason) == (
        'secrets "s" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the '
        "namespace \"default\": no relationship found between node 'n1' and this object"
    )
    listed = attrs("list", "secrets", namespace="default")
    assert not decide(NODE, listed).allowed
    assert forbidden_message(listed, decide(NODE, listed).reason) == (
        'secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the '
        'namespace "default": can only get individual resources of this type'
    )
    assert not decide(NODE, attrs("watch", "configmaps", namespace="default")).allowed


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (attrs("create", "events", namespace="default"), True),
        (attrs("update", "events", "e", namespace="default"), True),
        (
            attrs("update", "ingresses", "i", group="networking.k8s.io", namespace="default", sub="status"),
            True,
        ),
        (attrs("patch", "services", "s", namespace="default"), True),
        (attrs("delete", "services", "s", namespace="default"), False),
        (attrs("create", "namespaces"), False),
        (attrs("list", "deployments", group="apps", namespace="default"), False),
        (attrs("create", "secrets", namespace="kube-system"), False),
        (attrs("delete", "events", "e", namespace="default"), False),
    ],
)
def test_everything_else(request_: Attributes, allowed: bool) -> None:
    assert decide(NODE, request_).allowed is allowed


def test_cluster_scoped_refusal_message() -> None:
    request_ = attrs("create", "namespaces")
    assert forbidden_message(request_, decide(NODE, request_).reason) == (
        'namespaces is forbidden: User "system:node:n1" cannot create resource "namespaces" in API group "" '
        "at the cluster scope"
    )


@pytest.mark.parametrize(
    ("method", "named", "watch", "verb"),
    [
        ("GET", True, False, "get"),
        ("GET", False, False, "list"),
        ("GET", False, True, "watch"),
        ("POST", False, False, "create"),
        ("PUT", True, False, "update"),
        ("PATCH", True, False, "patch"),
        ("DELETE", True, False, "delete"),
        ("DELETE", False, False, "deletecollection"),
    ],
)
def test_http_verbs(method: str, named: bool, watch: bool, verb: str) -> None:
    assert http_verb(method, named, watch) == verb
