"""Defaulting: the fields the real apiserver fills in when a client leaves them out. Pure logic.

Mirrors ``pkg/apis/*/v1/defaults.go`` for the subset Corral serves, so that ``kubectl describe`` shows the
same values and a Deployment's template and its ReplicaSets' templates default identically (kubectl's
``rollout undo`` deep-compares them). Functions take an object the caller owns and fill it in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]

# DefaultTolerationSeconds (upstream an admission plugin with the apiserver flags
# --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds, 300 s each): every pod
# tolerates the node lifecycle controller's NoExecute taints for this long, visibly in its spec. Corral's
# default is short, as pods are cheap to replace; `corral up --pod-eviction-timeout` sets it for the
# process through ``set_default_toleration_seconds`` (process-wide, like the upstream flags).
DEFAULT_TOLERATION_SECONDS = 5
_toleration_seconds = DEFAULT_TOLERATION_SECONDS


def set_default_toleration_seconds(seconds: int) -> None:
    """The ``tolerationSeconds`` given to pods created from now on (existing pods keep theirs)."""
    global _toleration_seconds
    _toleration_seconds = max(0, int(seconds))


def default_toleration_seconds() -> int:
    return _toleration_seconds


def _setdefault(obj: JSON, key: str, value: Any) -> Any:
    # Go's defaulters test string fields against "" (their zero value), so "" counts as unset for them.
    current = obj.get(key)
    if current is None or (current == "" and isinstance(value, str)):
        obj[key] = value
    return obj[key]


def _list(value: Any) -> list[Any]:
    # Structural validation runs first, but defaulting must not crash on a shape it did not expect.
    return value if isinstance(value, list) else []


def _image_pull_policy(image: str) -> str:
    # As SetDefaults_Container with ParseImageName: "Always" when the tag is "latest", which is also the
    # tag of an image with neither tag nor digest; "IfNotPresent" otherwise.
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    if tag == "latest" or (not tag and not digest):
        return "Always"
    return "IfNotPresent"


def default_container(container: JSON) -> None:
    if container.get("image") is not None:
        _setdefault(container, "imagePullPolicy", _image_pull_policy(str(container["image"])))
    _setdefault(container, "terminationMessagePath", "/dev/termination-log")
    _setdefault(container, "terminationMessagePolicy", "File")
    for port in _list(container.get("ports")):
        if isinstance(port, dict):
            _setdefault(port, "protocol", "TCP")
    for env in _list(container.get("env")):
        if isinstance(env, dict):
            source = env.get("valueFrom")
            if isinstance(source, dict) and isinstance(source.get("fieldRef"), dict):
                _setdefault(source["fieldRef"], "apiVersion", "v1")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            _default_probe(probe)


def _default_probe(probe: JSON) -> None:
    _setdefault(probe, "timeoutSeconds", 1)
    _setdefault(probe, "periodSeconds", 10)
    _setdefault(probe, "successThreshold", 1)
    _setdefault(probe, "failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        _setdefault(http, "path", "/")
        _setdefault(http, "scheme", "HTTP")


def default_pod_spec(spec: JSON) -> None:
    _setdefault(spec, "restartPolicy", "Always")
    _setdefault(spec, "dnsPolicy", "ClusterFirst")
    _setdefault(spec, "terminationGracePeriodSeconds", 30)
    _setdefault(spec, "schedulerName", "default-scheduler")
    _setdefault(spec, "securityContext", {})
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers"):
        for container in _list(spec.get(key)):
            if isinstance(container, dict):
                default_container(container)
    for volume in _list(spec.get("volumes")):
        if not isinstance(volume, dict):
            continue
        for source_key in ("configMap", "secret", "downwardAPI", "projected"):
            source = volume.get(source_key)
            if isinstance(source, dict):
                _setdefault(source, "defaultMode", 420)


def default_pod_template(template: JSON) -> None:
    spec = template.get("spec")
    if isinstance(spec, dict):
        default_pod_spec(spec)


def _default_pod(obj: JSON) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        default_pod_spec(spec)
        _setdefault(spec, "enableServiceLinks", True)
        for key in ("containers", "initContainers"):
            for container in _list(spec.get(key)):
                if isinstance(container, dict):
                    _default_requests_to_limits(container)
        tolerations = _setdefault(spec, "tolerations", [])
        if isinstance(tolerations, list):
            keys = {t.get("key") for t in tolerations if isinstance(t, dict)}
            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                if key not in keys:
                    tolerations.append(
                        {
                            "key": key,
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": _toleration_seconds,
                        }
                    )
        if spec.get("priority") is None:
            spec["priority"] = 0


def _default_requests_to_limits(container: JSON) -> None:
    # SetDefaults_Pod (pods only, not templates): a limit without a request makes the request equal to it.
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return
    limits = resources.get("limits")
    if not isinstance(limits, dict) or not limits:
        return
    requests = _setdefault(resources, "requests", {})
    if isinstance(requests, dict):
        for name, value in limits.items():
            requests.setdefault(name, value)


def _default_deployment(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _setdefault(spec, "replicas", 1)
    strategy = _setdefault(spec, "strategy", {})
    if isinstance(strategy, dict):
        _setdefault(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = _setdefault(strategy, "rollingUpdate", {})
            if isinstance(rolling, dict):
                _setdefault(rolling, "maxUnavailable", "25%")
                _setdefault(rolling, "maxSurge", "25%")
    _setdefault(spec, "revisionHistoryLimit", 10)
    _setdefault(spec, "progressDeadlineSeconds", 600)
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_template(template)


def _default_replicaset(obj: JSON) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _setdefault(spec, "replicas", 1)
        template = spec.get("template")
        if isinstance(template, dict):
            default_pod_template(template)


def _default_job_spec(spec: JSON) -> None:
    completions = spec.get("completions")
    parallelism = spec.get("parallelism")
    if completions is None and parallelism is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    elif parallelism is None:
        spec["parallelism"] = 1
    _setdefault(spec, "backoffLimit", 6)
    _setdefault(spec, "completionMode", "NonIndexed")
    _setdefault(spec, "suspend", False)
    _setdefault(spec, "manualSelector", None)
    if spec.get("manualSelector") is None:
        spec.pop("manualSelector", None)
    _setdefault(spec, "podReplacementPolicy", "TerminatingOrFailed")
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_template(template)
        tspec = template.get("spec")
        if isinstance(tspec, dict) and tspec.get("restartPolicy") == "Always":
            # Jobs require Never/OnFailure; leave the value for validation to reject with a clear message.
            pass


def _default_job(obj: JSON) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _default_job_spec(spec)


def _default_cronjob(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _setdefault(spec, "concurrencyPolicy", "Allow")
    _setdefault(spec, "suspend", False)
    _setdefault(spec, "successfulJobsHistoryLimit", 3)
    _setdefault(spec, "failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
        job_spec = job_template["spec"]
        # CronJob job templates are defaulted like jobs except for the selector-derived fields.
        template = job_spec.get("template")
        if isinstance(template, dict):
            default_pod_template(template)


def _default_service(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _setdefault(spec, "type", "ClusterIP")
    affinity = _setdefault(spec, "sessionAffinity", "None")
    if affinity == "None":
        spec.pop("sessionAffinityConfig", None)
    elif affinity == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        client_ip = config.get("clientIP") if isinstance(config, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if spec["type"] in ("NodePort", "LoadBalancer"):
        _setdefault(spec, "externalTrafficPolicy", "Cluster")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        _setdefault(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        _setdefault(spec, "allocateLoadBalancerNodePorts", True)
    for port in _list(spec.get("ports")):
        if isinstance(port, dict):
            _setdefault(port, "protocol", "TCP")
            # SetDefaults_Service: an unset, 0 or "" targetPort is the port.
            if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
                port["targetPort"] = port["port"]
    if spec["type"] != "ExternalName":
        _setdefault(spec, "ipFamilies", ["IPv4"])
        _setdefault(spec, "ipFamilyPolicy", "SingleStack")


def _default_secret(obj: JSON) -> None:
    _setdefault(obj, "type", "Opaque")


def _default_namespace(obj: JSON) -> None:
    spec = _setdefault(obj, "spec", {})
    if isinstance(spec, dict):
        _setdefault(spec, "finalizers", ["kubernetes"])
    status = _setdefault(obj, "status", {})
    if isinstance(status, dict):
        _setdefault(status, "phase", "Active")
    meta = _setdefault(obj, "metadata", {})
    if not isinstance(meta, dict):
        return
    labels = _setdefault(meta, "labels", {})
    if isinstance(labels, dict) and meta.get("name"):
        labels["kubernetes.io/metadata.name"] = meta["name"]


def _default_hpa(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _setdefault(spec, "minReplicas", 1)
    if obj.get("apiVersion") == "autoscaling/v1":
        return
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]


def _default_node(obj: JSON) -> None:
    _setdefault(obj, "spec", {})


def _default_endpoint_slice(obj: JSON) -> None:
    # SetDefaults_EndpointPort (discovery/v1): a port's name defaults to "" and its protocol to TCP.
    for port in _list(obj.get("ports")):
        if isinstance(port, dict):
            if port.get("name") is None:
                port["name"] = ""
            _setdefault(port, "protocol", "TCP")


def _default_ingress_class(obj: JSON) -> None:
    # SetDefaults_IngressClass (networking/v1): parameters without a scope refer to a cluster-scoped object.
    spec = obj.get("spec")
    params = spec.get("parameters") if isinstance(spec, dict) else None
    if isinstance(params, dict):
        _setdefault(params, "scope", "Cluster")


DEFAULTERS: dict[str, Callable[[JSON], None]] = {
    "Pod": _default_pod,
    "Deployment": _default_deployment,
    "ReplicaSet": _default_replicaset,
    "Job": _default_job,
    "CronJob": _default_cronjob,
    "Service": _default_service,
    "Secret": _default_secret,
    "Namespace": _default_namespace,
    "HorizontalPodAutoscaler": _default_hpa,
    "Node": _default_node,
    "EndpointSlice": _default_endpoint_slice,
    "IngressClass": _default_ingress_class,
}


def apply_defaults(obj: JSON) -> None:
    """Fill in defaults for ``obj`` (any served kind) in place."""
    defaulter = DEFAULTERS.get(str(obj.get("kind", "")))
    if defaulter is not None:
        defaulter(obj)
