"""Node authorization: what a request authenticated as node N (``system:node:N``) may do. Pure decisions.

Upstream splits this between the Node authorizer (graph-based: a node reads the Secrets and ConfigMaps its
pods reference) and the NodeRestriction admission plugin (a node writes only its own Node, Lease and its pods'
status). Corral folds both into one decision here; the IO that gathers its inputs (the pod named by the
request, the pods bound to N in a namespace, the name in a create body) lives in ``auth.py``.

Allowed for node N (everything else is 403 Forbidden with upstream's Status message):

- read (get/list/watch) pods, nodes, services, endpoints, endpointslices, ingresses, namespaces
  (the system:node role lets a kubelet list and watch all pods, as here);
- get a Secret or ConfigMap referenced by a pod bound to N in that namespace, including the pinned
  snapshot copies named in the pod's ``corral.dev/config-pins`` annotation — never list or watch them;
- create/update/patch its own Node and ``nodes/status``; get/create/update/patch/delete its own Lease in
  ``kube-node-lease``;
- update/patch ``pods/status`` and delete pods bound to N (graceful deletion finishing); patch/update of a
  bound pod's main resource too, because the agent records its port allocation as an annotation (upstream's
  NodeRestriction forbids that; the difference is documented in docs/cluster.md);
- events: create/get/update/patch (the agent's event recorder counts repeats);
- the node data plane's writes: ``ingresses/status`` (load-balancer addresses) and patch of a Service (the
  scale-from-zero activation request). kube-proxy has an identity of its own upstream; here it shares the
  node's, so a node may patch Services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from corral.api.configrefs import CONFIGMAP, SECRET, parse_pins, pinned_name, pod_spec_refs

JSON = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
READ = frozenset({"get", "list", "watch"})
WRITE = frozenset({"create", "update", "patch"})
READABLE = frozenset(
    {
        ("", "pods"),
        ("", "nodes"),
        ("", "services"),
        ("", "endpoints"),
        ("", "namespaces"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
    }
)


@dataclass(frozen=True, slots=True)
class Attributes:
    """One request, as an authorizer sees it (Kubernetes' authorizer.Attributes, resource requests only)."""

    user: str
    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


class Need(Enum):
    """What the caller must look up before :func:`decide` can answer."""

    NOTHING = "nothing"
    POD = "pod"
    """The pod the request names (its ``spec.nodeName``)."""
    NODE_PODS = "node-pods"
    """The pods bound to the node in the request's namespace (their references)."""
    BODY_NAME = "body-name"
    """``metadata.name`` of the object a create sends."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def http_verb(method: str, has_name: bool, watch: bool) -> str:
    """The authorizer verb of an HTTP request to a resource path."""
    if method in ("GET", "HEAD"):
        return "watch" if watch else ("get" if has_name else "list")
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if has_name else "deletecollection",
    }.get(method, method.lower())


def needs(node: str, attrs: Attributes) -> Need:
    key = (attrs.group, attrs.resource)
    if (
        attrs.verb == "create"
        and attrs.name is None
        and key in (("", "nodes"), ("coordination.k8s.io", "leases"))
    ):
        return Need.BODY_NAME
    if key == ("", "pods") and attrs.name is not None and attrs.verb not in READ:
        return Need.POD
    if key in (("", "secrets"), ("", "configmaps")) and attrs.verb == "get" and attrs.name:
        return Need.NODE_PODS
    return Need.NOTHING


def referenced_names(pods: Iterable[Mapping[str, Any]], kind: str) -> set[str]:
    """Names of the ``kind`` objects (ConfigMap or Secret) these pods read, pinned snapshots included."""
    names: set[str] = set()
    for pod in pods:
        pins = parse_pins((pod.get("metadata") or {}).get("annotations"))
        for ref_kind, name in pod_spec_refs(pod.get("spec") or {}):
            if ref_kind == kind:
                names.add(name)
                names.add(pinned_name(pins, kind, name))
    return names


def decide(
    node: str,
    attrs: Attributes,
    *,
    pod: Mapping[str, Any] | None = None,
    node_pods: Iterable[Mapping[str, Any]] = (),
    body_name: str | None = None,
) -> Decision:
    """Whether node ``node`` may do ``attrs``; ``pod``/``node_pods``/``body_name`` as :func:`needs` asked."""
    key = (attrs.group, attrs.resource)
    verb, sub = attrs.verb, attrs.subresource
    if key in READABLE and verb in READ and sub is None:
        return ALLOW
    if key == ("", "nodes"):
        target = body_name if verb == "create" else attrs.name
        if verb in WRITE and sub in (None, "status"):
            if target == node:
                return ALLOW
            return Decision(False, f'node "{node}" is not allowed to modify node "{target or ""}"')
        if verb == "delete" and sub is None and target == node:
            return ALLOW
        return Decision(False, f'node "{node}" is not allowed to modify node "{target or ""}"')
    if key == ("coordination.k8s.io", "leases"):
        target = body_name if verb == "create" else attrs.name
        if (
            attrs.namespace == NODE_LEASE_NAMESPACE
            and sub is None
            and target == node
            and (verb in WRITE or verb in ("get", "delete"))
        ):
            return ALLOW
        return Decision(False, "can only access node lease with the same name as the requesting node")
    if key == ("", "pods") and attrs.name is not None:
        bound = pod is not None and (pod.get("spec") or {}).get("nodeName") == node
        if sub == "status" and verb in ("update", "patch"):
            return (
                ALLOW
                if bound
                else Decision(
                    False,
                    f'node "{node}" can only update pod status for pods with spec.nodeName set to itself',
                )
            )
        if sub is None and verb in ("update", "patch", "delete"):
            return (
                ALLOW
                if bound
                else Decision(False, f'node "{node}" can only {verb} pods with spec.nodeName set to itself')
            )
        return Decision(False, "")
    if key in (("", "secrets"), ("", "configmaps")):
        if verb != "get" or sub is not None or not attrs.name:
            return Decision(False, "can only get individual resources of this type")
        kind = SECRET if attrs.resource == "secrets" else CONFIGMAP
        if attrs.name in referenced_names(node_pods, kind):
            return ALLOW
        return Decision(False, f"no relationship found between node '{node}' and this object")
    if key in (("", "events"), ("events.k8s.io", "events")) and (verb in WRITE or verb == "get"):
        return ALLOW
    if key == ("networking.k8s.io", "ingresses") and sub == "status" and verb in ("update", "patch"):
        return ALLOW
    if key == ("", "services") and sub is None and verb == "patch":
        return ALLOW
    return Decision(False, "")


def forbidden_message(attrs: Attributes, reason: str) -> str:
    """Upstream's Forbidden text: ``<resource> "<name>" is forbidden: User "<u>" cannot <verb> resource ...``.

    NodeRestriction's refusals (``node "b" is not allowed to modify node "a"``) replace the part after the
    colon, as admission errors do upstream."""
    resource = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    subject = f'{resource} "{attrs.name}"' if attrs.name else resource
    if reason.startswith('node "') and (" is not allowed to modify " in reason or " can only " in reason):
        return f"{subject} is forbidden: {reason}"
    full = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{attrs.user}" cannot {attrs.verb} resource "{full}" '
        f'in API group "{attrs.group}" {scope}'
    )
    return f"{message}: {reason}" if reason else message
