"""The catalogue of resource kinds Corral serves: names, scope, verbs, subresources and schema names.

Everything that needs to know "which kinds exist" (routing, discovery, OpenAPI, the CLI's name resolution,
storage keys) reads this table, so adding a kind is one entry here plus its semantics in ``api/semantics``.
Pure data; no IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
VERBS_SUB = ("get", "patch", "update")
VERBS_READ = ("get", "list")


@dataclass(frozen=True, slots=True)
class Subresource:
    name: str
    kind: str
    group: str = ""
    version: str = ""
    verbs: tuple[str, ...] = VERBS_SUB


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    definition: str
    """Schema name in the Kubernetes OpenAPI definitions, e.g. ``io.k8s.api.apps.v1.Deployment``."""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = VERBS_ALL
    storage_group: str | None = None
    """Kinds served at several versions share storage; this names the stored group/version owner."""
    field_selectors: tuple[str, ...] = ()
    """Per-kind field selector keys beyond ``metadata.name`` and ``metadata.namespace``."""
    has_spec: bool = True
    """Whether the kind has a ``spec`` (ConfigMaps, Secrets, Events… carry their data at the top level)."""
    returns_deleted_object: bool = False
    """DELETE answers with the deleted object, not a Success Status (pods, services, serviceaccounts)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` as used in Status messages; just ``pods`` for the core group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return any(s.name == "status" for s in self.subresources)

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    def storage_prefix(self) -> str:
        """Key prefix of this kind in the store: ``/<group or core>/<plural>/``."""
        return f"/{self.storage_group or self.group or 'core'}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        return f"{self.storage_prefix()}{namespace or ''}/{name}"

    def list_prefix(self, namespace: str | None) -> str:
        return f"{self.storage_prefix()}{namespace}/" if namespace else self.storage_prefix()


STATUS = Subresource("status", "")  # kind filled per resource below
SCALE = Subresource("scale", "Scale", group="autoscaling", version="v1")


def _status(kind: str, group: str = "", version: str = "") -> Subresource:
    return Subresource("status", kind, group, version)


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        False,
        "io.k8s.api.core.v1.Namespace",
        short_names=("ns",),
        subresources=(_status("Namespace"),),
        field_selectors=("status.phase",),
    ),
    ResourceType(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        True,
        "io.k8s.api.core.v1.Pod",
        short_names=("po",),
        categories=("all",),
        returns_deleted_object=True,
        subresources=(
            _status("Pod"),
            Subresource("log", "Pod", verbs=("get",)),
            Subresource("exec", "PodExecOptions", verbs=("create", "get")),
            Subresource("portforward", "PodPortForwardOptions", verbs=("create", "get")),
            Subresource("eviction", "Eviction", group="policy", version="v1", verbs=("create",)),
            Subresource("binding", "Binding", verbs=("create",)),
        ),
        field_selectors=(
            "status.phase",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    ResourceType(
        "",
        "v1",
        "Service",
        "services",
        "service",
        True,
        "io.k8s.api.core.v1.Service",
        short_names=("svc",),
        categories=("all",),
        subresources=(_status("Service"),),
        returns_deleted_object=True,
        field_selectors=("spec.clusterIP", "spec.type"),
    ),
    ResourceType(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        True,
        "io.k8s.api.core.v1.Endpoints",
        short_names=("ep",),
        has_spec=False,
    ),
    ResourceType(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        True,
        "io.k8s.api.core.v1.ConfigMap",
        short_names=("cm",),
        has_spec=False,
    ),
    ResourceType(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        True,
        "io.k8s.api.core.v1.Secret",
        has_spec=False,
        field_selectors=("type",),
    ),
    ResourceType(
        "",
        "v1",
        "Event",
        "events",
        "event",
        True,
        "io.k8s.api.core.v1.Event",
        short_names=("ev",),
        has_spec=False,
        field_selectors=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    ResourceType(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        False,
        "io.k8s.api.core.v1.Node",
        short_names=("no",),
        subresources=(_status("Node"),),
        field_selectors=("spec.unschedulable",),
    ),
    ResourceType(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        True,
        "io.k8s.api.core.v1.ServiceAccount",
        short_names=("sa",),
        has_spec=False,
        returns_deleted_object=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        True,
        "io.k8s.api.apps.v1.Deployment",
        short_names=("deploy",),
        categories=("all",),
        subresources=(_status("Deployment", "apps", "v1"), SCALE),
    ),
    ResourceType(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        True,
        "io.k8s.api.apps.v1.ReplicaSet",
        short_names=("rs",),
        categories=("all",),
        subresources=(_status("ReplicaSet", "apps", "v1"), SCALE),
        field_selectors=("status.replicas",),
    ),
    ResourceType(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        True,
        "io.k8s.api.batch.v1.Job",
        categories=("all",),
        subresources=(_status("Job", "batch", "v1"),),
        field_selectors=("status.successful",),
    ),
    ResourceType(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        True,
        "io.k8s.api.batch.v1.CronJob",
        short_names=("cj",),
        categories=("all",),
        subresources=(_status("CronJob", "batch", "v1"),),
    ),
    ResourceType(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        True,
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        short_names=("hpa",),
        categories=("all",),
        subresources=(_status("HorizontalPodAutoscaler", "autoscaling", "v2"),),
    ),
    ResourceType(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        True,
        "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
        short_names=("hpa",),
        categories=("all",),
        subresources=(_status("HorizontalPodAutoscaler", "autoscaling", "v1"),),
        storage_group="autoscaling",
    ),
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        True,
        "io.k8s.api.coordination.v1.Lease",
    ),
    ResourceType(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        True,
        "io.k8s.api.discovery.v1.EndpointSlice",
        has_spec=False,
    ),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        True,
        "io.k8s.api.networking.v1.Ingress",
        short_names=("ing",),
        subresources=(_status("Ingress", "networking.k8s.io", "v1"),),
    ),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        False,
        "io.k8s.api.networking.v1.IngressClass",
    ),
    ResourceType(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        True,
        "io.k8s.api.policy.v1.PodDisruptionBudget",
        short_names=("pdb",),
        subresources=(_status("PodDisruptionBudget", "policy", "v1"),),
    ),
    # Resource metrics (metrics-server's API): computed from the agents' samples on each request, never
    # stored (``apiserver.metricsapi``). Listed after core pods/nodes so "pods" still resolves to those.
    ResourceType(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        "nodemetrics",
        False,
        "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics",
        verbs=VERBS_READ,
        has_spec=False,
    ),
    ResourceType(
        "metrics.k8s.io",
        "v1beta1",
        "PodMetrics",
        "pods",
        "podmetrics",
        True,
        "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics",
        verbs=VERBS_READ,
        has_spec=False,
    ),
)

# Preferred version first within each group: kubectl uses the first listed version (autoscaling/v2).
GROUP_ORDER: tuple[str, ...] = (
    "",
    "apps",
    "batch",
    "autoscaling",
    "networking.k8s.io",
    "policy",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "metrics.k8s.io",
)


def group_versions(group: str) -> list[str]:
    """Versions served for ``group``, preferred first."""
    seen: list[str] = []
    for r in RESOURCES:
        if r.group == group and r.version not in seen:
            seen.append(r.version)
    return seen


@dataclass(slots=True)
class Registry:
    """Lookup tables over :data:`RESOURCES`."""

    resources: tuple[ResourceType, ...] = RESOURCES
    _by_path: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.resources:
            self._by_path[(r.group, r.version, r.plural)] = r

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for r in self.resources:
            if r.kind == kind and r.api_version == api_version:
                return r
        return None

    def preferred(self) -> list[ResourceType]:
        """One entry per (group, plural): the preferred version."""
        out: list[ResourceType] = []
        seen: set[tuple[str, str]] = set()
        for r in self.resources:
            if (r.group, r.plural) not in seen:
                seen.add((r.group, r.plural))
                out.append(r)
        return out

    def require(self, name: str) -> ResourceType:
        """Like :meth:`resolve` for names the code itself spells; a miss is a programming error."""
        found = self.resolve(name)
        if found is None:
            raise KeyError(f"no served resource {name!r}")
        return found

    def resolve(self, name: str) -> ResourceType | None:
        """Resolve what a user typed (``deploy``, ``deployments``, ``Deployment``, ``deployments.apps``)."""
        lowered = name.lower()
        group: str | None = None
        if "." in lowered:
            lowered, group = lowered.split(".", 1)
        for r in self.preferred():
            if group is not None and r.group != group:
                continue
            if lowered in (r.plural, r.singular, r.kind.lower(), *r.short_names):
                return r
        return None


REGISTRY = Registry()
