"""Decoding Kubernetes protobuf request bodies into the JSON dicts a JSON client would have sent.

kubectl's typed-clientset commands (``create configmap|secret|namespace|service|deployment|job|cronjob``,
``autoscale``) POST ``application/vnd.kubernetes.protobuf`` and never fall back to JSON on a 415. The body is
the 4-byte magic ``k8s\\x00`` and a ``runtime.Unknown`` envelope {1: TypeMeta{1: apiVersion, 2: kind},
2: raw, 3: contentEncoding, 4: contentType}; ``raw`` is the object encoded per k8s.io/api ``generated.proto``.

Why by hand: the official schemas exist only as ``.proto`` files inside Go modules, and compiling them (with
protoc or grpcio-tools) would add a build step and a large dependency to decode a handful of request kinds.
A wire reader plus field tables for those kinds is small, and the tables double as documentation of what we
accept. Responses stay JSON: kubectl accepts them.

How Go encodes, and so what we undo:
- go-to-protobuf writes *every* non-pointer field, zero values included (``generateName: ""``,
  ``minReadySeconds: 0``, an empty ``creationTimestamp``), while JSON ``omitempty`` drops them. So zero
  scalars and empty non-pointer messages are dropped, unless the Go field is a pointer (``Field.ptr``):
  then presence is meaningful (``replicas: 0``, ``emptyDir: {}``, ``maxUnavailable: 0``) and kept.
- Embedded Go structs (``Probe.ProbeHandler``, ``Volume.VolumeSource``, ``ConfigMapKeySelector``'s
  ``LocalObjectReference``) are nested messages on the wire but inlined in JSON (``Field.inline``).
- ``Time{seconds,nanos}`` → RFC 3339 (omitted when zero), ``IntOrString{type,intVal,strVal}`` → int or
  string, ``Quantity{string}`` → string, ``bytes`` → base64.

Unknown field numbers are skipped (newer kubectl fields, status blocks) and collected in
:attr:`Decoded.skipped` for a debug log. Kinds without a table raise :class:`UnsupportedKind` (the handler
answers 415); malformed bytes raise :class:`ProtobufError` (400).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
MAX_DEPTH = 64

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# Value kinds: scalars, bytes (base64), a nested message table, or one of the apimachinery wrappers.
Kind = Literal["string", "bytes", "int32", "int64", "bool", "message", "time", "intstr", "quantity"]

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_WIRE_OF: dict[str, int] = {
    "string": _LEN,
    "bytes": _LEN,
    "int32": _VARINT,
    "int64": _VARINT,
    "bool": _VARINT,
    "message": _LEN,
    "time": _LEN,
    "intstr": _LEN,
    "quantity": _LEN,
}


class ProtobufError(ValueError):
    """The body is not a well-formed Kubernetes protobuf object; the message says what is wrong."""


class UnsupportedKind(ProtobufError):
    """A well-formed envelope around a kind we have no field table for."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f"no protobuf decoder for {api_version}/{kind}; send it as JSON or YAML")
        self.api_version, self.kind = api_version, kind


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    message: str = ""  # table name, for kind == "message"
    repeated: bool = False
    map: bool = False  # map<string, kind>: entries {1: key, 2: value}
    ptr: bool = False  # Go pointer (or non-omitempty required) field: keep zero values and empty messages
    inline: bool = False  # Go embedded struct: merge the nested message's keys into the parent


def _s(name: str, *, ptr: bool = False) -> Field:
    return Field(name, "string", ptr=ptr)


def _i32(name: str, *, ptr: bool = False) -> Field:
    return Field(name, "int32", ptr=ptr)


def _i64(name: str, *, ptr: bool = False) -> Field:
    return Field(name, "int64", ptr=ptr)


def _b(name: str, *, ptr: bool = False) -> Field:
    return Field(name, "bool", ptr=ptr)


def _m(name: str, message: str, *, ptr: bool = False, inline: bool = False) -> Field:
    return Field(name, "message", message, ptr=ptr, inline=inline)


def _list(name: str, kind: Kind, message: str = "") -> Field:
    return Field(name, kind, message, repeated=True)


def _map(name: str, kind: Kind = "string") -> Field:
    return Field(name, kind, map=True)


# Field numbers from k8s.io/api {core,apps,batch,autoscaling}/v1 and apimachinery meta/v1 generated.proto.
MESSAGES: dict[str, dict[int, Field]] = {
    # ---------------------------------------------------------------- meta/v1
    "ObjectMeta": {
        1: _s("name"),
        2: _s("generateName"),
        3: _s("namespace"),
        4: _s("selfLink"),
        5: _s("uid"),
        6: _s("resourceVersion"),
        7: _i64("generation"),
        8: Field("creationTimestamp", "time"),
        9: Field("deletionTimestamp", "time"),
        10: _i64("deletionGracePeriodSeconds", ptr=True),
        11: _map("labels"),
        12: _map("annotations"),
        13: _list("ownerReferences", "message", "OwnerReference"),
        14: _list("finalizers", "string"),
    },
    "OwnerReference": {
        5: _s("apiVersion"),
        1: _s("kind"),
        3: _s("name"),
        4: _s("uid"),
        6: _b("controller", ptr=True),
        7: _b("blockOwnerDeletion", ptr=True),
    },
    "LabelSelector": {
        1: _map("matchLabels"),
        2: _list("matchExpressions", "message", "LabelSelectorRequirement"),
    },
    "LabelSelectorRequirement": {1: _s("key"), 2: _s("operator"), 3: _list("values", "string")},
    # ---------------------------------------------------------------- core/v1 objects
    "Namespace": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: _list("finalizers", "string")},
    "ConfigMap": {
        1: _m("metadata", "ObjectMeta"),
        4: _b("immutable", ptr=True),
        2: _map("data"),
        3: _map("binaryData", "bytes"),
    },
    "Secret": {
        1: _m("metadata", "ObjectMeta"),
        5: _b("immutable", ptr=True),
        2: _map("data", "bytes"),
        4: _map("stringData"),
        3: _s("type"),
    },
    "ServiceAccount": {
        1: _m("metadata", "ObjectMeta"),
        2: _list("secrets", "message", "ObjectReference"),
        3: _list("imagePullSecrets", "message", "LocalObjectReference"),
        4: _b("automountServiceAccountToken", ptr=True),
    },
    "Service": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "ServiceSpec")},
    "ServiceSpec": {
        1: _list("ports", "message", "ServicePort"),
        2: _map("selector"),
        3: _s("clusterIP"),
        18: _list("clusterIPs", "string"),
        4: _s("type"),
        5: _list("externalIPs", "string"),
        7: _s("sessionAffinity"),
        8: _s("loadBalancerIP"),
        9: _list("loadBalancerSourceRanges", "string"),
        10: _s("externalName"),
        11: _s("externalTrafficPolicy"),
        12: _i32("healthCheckNodePort"),
        13: _b("publishNotReadyAddresses"),
        14: _m("sessionAffinityConfig", "SessionAffinityConfig", ptr=True),
        19: _list("ipFamilies", "string"),
        17: _s("ipFamilyPolicy", ptr=True),
        20: _b("allocateLoadBalancerNodePorts", ptr=True),
        21: _s("loadBalancerClass", ptr=True),
        22: _s("internalTrafficPolicy", ptr=True),
        23: _s("trafficDistribution", ptr=True),
    },
    "ServicePort": {
        1: _s("name"),
        2: _s("protocol"),
        6: _s("appProtocol", ptr=True),
        3: _i32("port", ptr=True),
        4: Field("targetPort", "intstr"),
        5: _i32("nodePort"),
    },
    "SessionAffinityConfig": {1: _m("clientIP", "ClientIPConfig", ptr=True)},
    "ClientIPConfig": {1: _i32("timeoutSeconds", ptr=True)},
    "Pod": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "PodSpec")},
    "Binding": {1: _m("metadata", "ObjectMeta"), 2: _m("target", "ObjectReference")},
    "ObjectReference": {
        1: _s("kind"),
        2: _s("namespace"),
        3: _s("name"),
        4: _s("uid"),
        5: _s("apiVersion"),
        6: _s("resourceVersion"),
        7: _s("fieldPath"),
    },
    "LocalObjectReference": {1: _s("name")},
    # ---------------------------------------------------------------- core/v1 pod template
    "PodTemplateSpec": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "PodSpec")},
    "PodSpec": {
        1: _list("volumes", "message", "Volume"),
        20: _list("initContainers", "message", "Container"),
        2: _list("containers", "message", "Container"),
        3: _s("restartPolicy"),
        4: _i64("terminationGracePeriodSeconds", ptr=True),
        5: _i64("activeDeadlineSeconds", ptr=True),
        6: _s("dnsPolicy"),
        7: _map("nodeSelector"),
        8: _s("serviceAccountName"),
        9: _s("serviceAccount"),
        21: _b("automountServiceAccountToken", ptr=True),
        10: _s("nodeName"),
        11: _b("hostNetwork"),
        12: _b("hostPID"),
        13: _b("hostIPC"),
        27: _b("shareProcessNamespace", ptr=True),
        14: _m("securityContext", "PodSecurityContext", ptr=True),
        15: _list("imagePullSecrets", "message", "LocalObjectReference"),
        16: _s("hostname"),
        17: _s("subdomain"),
        19: _s("schedulerName"),
        22: _list("tolerations", "message", "Toleration"),
        23: _list("hostAliases", "message", "HostAlias"),
        24: _s("priorityClassName"),
        25: _i32("priority", ptr=True),
        28: _list("readinessGates", "message", "PodReadinessGate"),
        29: _s("runtimeClassName", ptr=True),
        30: _b("enableServiceLinks", ptr=True),
        31: _s("preemptionPolicy", ptr=True),
        35: _b("setHostnameAsFQDN", ptr=True),
        36: _m("os", "PodOS", ptr=True),
        37: _b("hostUsers", ptr=True),
        38: _list("schedulingGates", "message", "PodSchedulingGate"),
    },
    "PodOS": {1: _s("name")},
    "PodSchedulingGate": {1: _s("name")},
    "PodReadinessGate": {1: _s("conditionType")},
    "HostAlias": {1: _s("ip"), 2: _list("hostnames", "string")},
    "Toleration": {
        1: _s("key"),
        2: _s("operator"),
        3: _s("value"),
        4: _s("effect"),
        5: _i64("tolerationSeconds", ptr=True),
    },
    "PodSecurityContext": {
        2: _i64("runAsUser", ptr=True),
        6: _i64("runAsGroup", ptr=True),
        3: _b("runAsNonRoot", ptr=True),
        4: _list("supplementalGroups", "int64"),
        5: _i64("fsGroup", ptr=True),
        9: _s("fsGroupChangePolicy", ptr=True),
    },
    "SecurityContext": {
        1: _m("capabilities", "Capabilities", ptr=True),
        2: _b("privileged", ptr=True),
        4: _i64("runAsUser", ptr=True),
        8: _i64("runAsGroup", ptr=True),
        5: _b("runAsNonRoot", ptr=True),
        6: _b("readOnlyRootFilesystem", ptr=True),
        7: _b("allowPrivilegeEscalation", ptr=True),
        9: _s("procMount", ptr=True),
    },
    "Capabilities": {1: _list("add", "string"), 2: _list("drop", "string")},
    "Volume": {1: _s("name"), 2: _m("volumeSource", "VolumeSource", inline=True)},
    "VolumeSource": {
        1: _m("hostPath", "HostPathVolumeSource", ptr=True),
        2: _m("emptyDir", "EmptyDirVolumeSource", ptr=True),
        6: _m("secret", "SecretVolumeSource", ptr=True),
        10: _m("persistentVolumeClaim", "PersistentVolumeClaimVolumeSource", ptr=True),
        16: _m("downwardAPI", "DownwardAPIVolumeSource", ptr=True),
        19: _m("configMap", "ConfigMapVolumeSource", ptr=True),
        26: _m("projected", "ProjectedVolumeSource", ptr=True),
    },
    "HostPathVolumeSource": {1: _s("path"), 2: _s("type", ptr=True)},
    "EmptyDirVolumeSource": {1: _s("medium"), 2: Field("sizeLimit", "quantity", ptr=True)},
    "SecretVolumeSource": {
        1: _s("secretName"),
        2: _list("items", "message", "KeyToPath"),
        3: _i32("defaultMode", ptr=True),
        4: _b("optional", ptr=True),
    },
    "ConfigMapVolumeSource": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _list("items", "message", "KeyToPath"),
        3: _i32("defaultMode", ptr=True),
        4: _b("optional", ptr=True),
    },
    "PersistentVolumeClaimVolumeSource": {1: _s("claimName"), 2: _b("readOnly")},
    "DownwardAPIVolumeSource": {
        1: _list("items", "message", "DownwardAPIVolumeFile"),
        2: _i32("defaultMode", ptr=True),
    },
    "DownwardAPIVolumeFile": {
        1: _s("path"),
        2: _m("fieldRef", "ObjectFieldSelector", ptr=True),
        3: _m("resourceFieldRef", "ResourceFieldSelector", ptr=True),
        4: _i32("mode", ptr=True),
    },
    "ProjectedVolumeSource": {
        1: _list("sources", "message", "VolumeProjection"),
        2: _i32("defaultMode", ptr=True),
    },
    "VolumeProjection": {
        1: _m("secret", "SecretProjection", ptr=True),
        2: _m("downwardAPI", "DownwardAPIVolumeSource", ptr=True),
        3: _m("configMap", "ConfigMapProjection", ptr=True),
        4: _m("serviceAccountToken", "ServiceAccountTokenProjection", ptr=True),
    },
    "SecretProjection": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _list("items", "message", "KeyToPath"),
        4: _b("optional", ptr=True),
    },
    "ConfigMapProjection": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _list("items", "message", "KeyToPath"),
        4: _b("optional", ptr=True),
    },
    "ServiceAccountTokenProjection": {
        1: _s("audience"),
        2: _i64("expirationSeconds", ptr=True),
        3: _s("path"),
    },
    "KeyToPath": {1: _s("key"), 2: _s("path"), 3: _i32("mode", ptr=True)},
    # ---------------------------------------------------------------- core/v1 container
    "Container": {
        1: _s("name"),
        2: _s("image"),
        3: _list("command", "string"),
        4: _list("args", "string"),
        5: _s("workingDir"),
        6: _list("ports", "message", "ContainerPort"),
        19: _list("envFrom", "message", "EnvFromSource"),
        7: _list("env", "message", "EnvVar"),
        8: _m("resources", "ResourceRequirements"),
        23: _list("resizePolicy", "message", "ContainerResizePolicy"),
        24: _s("restartPolicy", ptr=True),
        9: _list("volumeMounts", "message", "VolumeMount"),
        21: _list("volumeDevices", "message", "VolumeDevice"),
        10: _m("livenessProbe", "Probe", ptr=True),
        11: _m("readinessProbe", "Probe", ptr=True),
        22: _m("startupProbe", "Probe", ptr=True),
        12: _m("lifecycle", "Lifecycle", ptr=True),
        13: _s("terminationMessagePath"),
        20: _s("terminationMessagePolicy"),
        14: _s("imagePullPolicy"),
        15: _m("securityContext", "SecurityContext", ptr=True),
        16: _b("stdin"),
        17: _b("stdinOnce"),
        18: _b("tty"),
    },
    "ContainerPort": {
        1: _s("name"),
        2: _i32("hostPort"),
        3: _i32("containerPort", ptr=True),
        4: _s("protocol"),
        5: _s("hostIP"),
    },
    "ContainerResizePolicy": {1: _s("resourceName"), 2: _s("restartPolicy")},
    "EnvFromSource": {
        1: _s("prefix"),
        2: _m("configMapRef", "ConfigMapEnvSource", ptr=True),
        3: _m("secretRef", "SecretEnvSource", ptr=True),
    },
    "ConfigMapEnvSource": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _b("optional", ptr=True),
    },
    "SecretEnvSource": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _b("optional", ptr=True),
    },
    "EnvVar": {1: _s("name"), 2: _s("value"), 3: _m("valueFrom", "EnvVarSource", ptr=True)},
    "EnvVarSource": {
        1: _m("fieldRef", "ObjectFieldSelector", ptr=True),
        2: _m("resourceFieldRef", "ResourceFieldSelector", ptr=True),
        3: _m("configMapKeyRef", "ConfigMapKeySelector", ptr=True),
        4: _m("secretKeyRef", "SecretKeySelector", ptr=True),
    },
    "ObjectFieldSelector": {1: _s("apiVersion"), 2: _s("fieldPath")},
    "ResourceFieldSelector": {
        1: _s("containerName"),
        2: _s("resource"),
        3: Field("divisor", "quantity"),
    },
    "ConfigMapKeySelector": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _s("key"),
        3: _b("optional", ptr=True),
    },
    "SecretKeySelector": {
        1: _m("localObjectReference", "LocalObjectReference", inline=True),
        2: _s("key"),
        3: _b("optional", ptr=True),
    },
    "ResourceRequirements": {
        1: _map("limits", "quantity"),
        2: _map("requests", "quantity"),
        3: _list("claims", "message", "ResourceClaim"),
    },
    "ResourceClaim": {1: _s("name"), 2: _s("request")},
    "VolumeMount": {
        1: _s("name"),
        2: _b("readOnly"),
        7: _s("recursiveReadOnly", ptr=True),
        3: _s("mountPath"),
        4: _s("subPath"),
        5: _s("mountPropagation", ptr=True),
        6: _s("subPathExpr"),
    },
    "VolumeDevice": {1: _s("name"), 2: _s("devicePath")},
    "Probe": {
        1: _m("handler", "ProbeHandler", inline=True),
        2: _i32("initialDelaySeconds"),
        3: _i32("timeoutSeconds"),
        4: _i32("periodSeconds"),
        5: _i32("successThreshold"),
        6: _i32("failureThreshold"),
        7: _i64("terminationGracePeriodSeconds", ptr=True),
    },
    "ProbeHandler": {
        1: _m("exec", "ExecAction", ptr=True),
        2: _m("httpGet", "HTTPGetAction", ptr=True),
        3: _m("tcpSocket", "TCPSocketAction", ptr=True),
        4: _m("grpc", "GRPCAction", ptr=True),
    },
    "Lifecycle": {
        1: _m("postStart", "LifecycleHandler", ptr=True),
        2: _m("preStop", "LifecycleHandler", ptr=True),
    },
    "LifecycleHandler": {
        1: _m("exec", "ExecAction", ptr=True),
        2: _m("httpGet", "HTTPGetAction", ptr=True),
        3: _m("tcpSocket", "TCPSocketAction", ptr=True),
        4: _m("sleep", "SleepAction", ptr=True),
    },
    "ExecAction": {1: _list("command", "string")},
    "HTTPGetAction": {
        1: _s("path"),
        2: Field("port", "intstr", ptr=True),
        3: _s("host"),
        4: _s("scheme"),
        5: _list("httpHeaders", "message", "HTTPHeader"),
    },
    "HTTPHeader": {1: _s("name"), 2: _s("value", ptr=True)},
    "TCPSocketAction": {1: Field("port", "intstr", ptr=True), 2: _s("host")},
    "GRPCAction": {1: _i32("port", ptr=True), 2: _s("service", ptr=True)},
    "SleepAction": {1: _i64("seconds", ptr=True)},
    # ---------------------------------------------------------------- apps/v1
    "Deployment": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "DeploymentSpec")},
    "DeploymentSpec": {
        1: _i32("replicas", ptr=True),
        2: _m("selector", "LabelSelector", ptr=True),
        3: _m("template", "PodTemplateSpec"),
        4: _m("strategy", "DeploymentStrategy"),
        5: _i32("minReadySeconds"),
        6: _i32("revisionHistoryLimit", ptr=True),
        7: _b("paused"),
        9: _i32("progressDeadlineSeconds", ptr=True),
    },
    "DeploymentStrategy": {1: _s("type"), 2: _m("rollingUpdate", "RollingUpdateDeployment", ptr=True)},
    "RollingUpdateDeployment": {
        1: Field("maxUnavailable", "intstr", ptr=True),
        2: Field("maxSurge", "intstr", ptr=True),
    },
    "ReplicaSet": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "ReplicaSetSpec")},
    "ReplicaSetSpec": {
        1: _i32("replicas", ptr=True),
        4: _i32("minReadySeconds"),
        2: _m("selector", "LabelSelector", ptr=True),
        3: _m("template", "PodTemplateSpec"),
    },
    # ---------------------------------------------------------------- batch/v1
    "Job": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "JobSpec")},
    "JobSpec": {
        1: _i32("parallelism", ptr=True),
        2: _i32("completions", ptr=True),
        3: _i64("activeDeadlineSeconds", ptr=True),
        7: _i32("backoffLimit", ptr=True),
        12: _i32("backoffLimitPerIndex", ptr=True),
        13: _i32("maxFailedIndexes", ptr=True),
        4: _m("selector", "LabelSelector", ptr=True),
        5: _b("manualSelector", ptr=True),
        6: _m("template", "PodTemplateSpec"),
        8: _i32("ttlSecondsAfterFinished", ptr=True),
        9: _s("completionMode", ptr=True),
        10: _b("suspend", ptr=True),
        14: _s("podReplacementPolicy", ptr=True),
        15: _s("managedBy", ptr=True),
    },
    "CronJob": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "CronJobSpec")},
    "CronJobSpec": {
        1: _s("schedule"),
        8: _s("timeZone", ptr=True),
        2: _i64("startingDeadlineSeconds", ptr=True),
        3: _s("concurrencyPolicy"),
        4: _b("suspend", ptr=True),
        5: _m("jobTemplate", "JobTemplateSpec"),
        6: _i32("successfulJobsHistoryLimit", ptr=True),
        7: _i32("failedJobsHistoryLimit", ptr=True),
    },
    "JobTemplateSpec": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "JobSpec")},
    # ---------------------------------------------------------------- autoscaling/v1
    "HorizontalPodAutoscaler": {
        1: _m("metadata", "ObjectMeta"),
        2: _m("spec", "HorizontalPodAutoscalerSpec"),
    },
    "HorizontalPodAutoscalerSpec": {
        1: _m("scaleTargetRef", "CrossVersionObjectReference"),
        2: _i32("minReplicas", ptr=True),
        3: _i32("maxReplicas", ptr=True),
        4: _i32("targetCPUUtilizationPercentage", ptr=True),
    },
    "CrossVersionObjectReference": {1: _s("kind"), 2: _s("name"), 3: _s("apiVersion")},
    "Scale": {1: _m("metadata", "ObjectMeta"), 2: _m("spec", "ScaleSpec")},
    "ScaleSpec": {1: _i32("replicas")},
}

# (apiVersion, kind) → top-level message table. Status blocks are not tabled: a create or update ignores them.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "Service"): "Service",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Pod"): "Pod",
    ("v1", "Binding"): "Binding",
    ("apps/v1", "Deployment"): "Deployment",
    ("apps/v1", "ReplicaSet"): "ReplicaSet",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("autoscaling/v1", "HorizontalPodAutoscaler"): "HorizontalPodAutoscaler",
    ("autoscaling/v1", "Scale"): "Scale",
}

MESSAGES["runtime.TypeMeta"] = {1: _s("apiVersion"), 2: _s("kind")}
MESSAGES["Time"] = {1: _i64("seconds"), 2: _i32("nanos")}
MESSAGES["IntOrString"] = {1: _i64("type"), 2: _i32("intVal"), 3: _s("strVal")}
MESSAGES["Quantity"] = {1: _s("string")}


# -------------------------------------------------------------------------------------- wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message: ints for varint and fixed, bytes
    for length-delimited. Groups (wire types 3 and 4) are errors: go-to-protobuf never writes them."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0 is not allowed")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ProtobufError(f"field {number}: length {length} runs past the end of its message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise ProtobufError(f"field {number}: truncated 64-bit value")
            yield number, wire, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise ProtobufError(f"field {number}: truncated 32-bit value")
            yield number, wire, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# ------------------------------------------------------------------------------------------ decoding


@dataclass
class Decoded:
    """A decoded object and the paths of fields we skipped (``spec.template.spec.containers.25``)."""

    obj: JSON
    skipped: list[str] = field(default_factory=list)


class _Decoder:
    def __init__(self) -> None:
        self.skipped: list[str] = []

    def message(self, buf: bytes, table_name: str, path: str, depth: int) -> JSON:
        if depth > MAX_DEPTH:
            raise ProtobufError(f"{path or 'object'}: nested deeper than {MAX_DEPTH} levels")
        table = MESSAGES[table_name]
        out: JSON = {}
        for number, wire, raw in iter_fields(buf):
            f = table.get(number)
            if f is None:
                self.skipped.append(f"{path}.{number}" if path else str(number))
                continue
            where = f"{path}.{f.name}" if path else f.name
            if f.map:
                if wire != _LEN:
                    raise ProtobufError(f"{where}: map entry has wire type {wire}")
                assert isinstance(raw, bytes)
                key, value = self._map_entry(raw, f, where, depth)
                out.setdefault(f.name, {})[key] = value
            elif f.repeated and wire == _LEN and f.kind in ("int32", "int64", "bool"):
                assert isinstance(raw, bytes)  # packed scalars
                items = out.setdefault(f.name, [])
                pos = 0
                while pos < len(raw):
                    v, pos = _varint(raw, pos)
                    items.append(self._scalar(v, f))
            else:
                value = self._value(raw, wire, f, where, depth)
                if value is None:  # a zero Time: JSON null, omitted
                    continue
                if f.repeated:
                    out.setdefault(f.name, []).append(value)
                elif f.inline:
                    assert isinstance(value, dict)
                    out.update(value)
                elif isinstance(value, dict) and isinstance(out.get(f.name), dict):
                    out[f.name].update(value)  # a repeated occurrence of a message field merges into it
                else:
                    out[f.name] = value
        return self._drop_zero(out, table)

    def _value(self, raw: int | bytes, wire: int, f: Field, where: str, depth: int) -> Any:
        expected = _WIRE_OF[f.kind]
        if wire != expected:
            raise ProtobufError(f"{where}: wire type {wire}, expected {expected} for {f.kind}")
        if isinstance(raw, int):
            return self._scalar(raw, f)
        if f.kind == "string":
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtobufError(f"{where}: string is not valid UTF-8") from exc
        if f.kind == "bytes":
            return base64.b64encode(raw).decode("ascii")
        if f.kind == "message":
            return self.message(raw, f.message, where, depth + 1)
        if f.kind == "time":
            return _time(self.message(raw, "Time", where, depth + 1), where)
        if f.kind == "intstr":
            v = self.message(raw, "IntOrString", where, depth + 1)
            return v.get("strVal", "") if v.get("type") == 1 else v.get("intVal", 0)
        if f.kind == "quantity":
            return self.message(raw, "Quantity", where, depth + 1).get("string", "")
        raise AssertionError(f.kind)  # pragma: no cover - _WIRE_OF covers every kind

    @staticmethod
    def _scalar(value: int, f: Field) -> int | bool:
        if f.kind == "bool":
            return value != 0
        return _signed(value, 32 if f.kind == "int32" else 64)

    def _map_entry(self, buf: bytes, f: Field, where: str, depth: int) -> tuple[str, Any]:
        key = ""
        value: Any = None
        value_field = Field(f.name, f.kind, f.message)
        for number, wire, raw in iter_fields(buf):
            if number == 1:
                if wire != _LEN:
                    raise ProtobufError(f"{where}: map key has wire type {wire}")
                assert isinstance(raw, bytes)
                try:
                    key = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ProtobufError(f"{where}: map key is not valid UTF-8") from exc
            elif number == 2:
                value = self._value(raw, wire, value_field, f"{where}[{key}]", depth + 1)
        if value is None:  # an absent value is the type's zero value
            value = 0 if f.kind in ("int32", "int64") else False if f.kind == "bool" else ""
        return key, value

    @staticmethod
    def _drop_zero(out: JSON, table: dict[int, Field]) -> JSON:
        for f in table.values():
            if f.ptr or f.repeated or f.map or f.inline or f.name not in out:
                continue
            value = out[f.name]
            if value == "" or value == {} or value == 0:  # 0 == False: zero bools go too
                del out[f.name]
        return out


def _time(value: JSON, where: str) -> str | None:
    seconds, nanos = value.get("seconds", 0), value.get("nanos", 0)
    if not seconds and not nanos:
        return None
    try:
        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ProtobufError(f"{where}: timestamp {seconds} is out of range") from exc
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def decode_unknown(body: bytes) -> tuple[str, str, bytes]:
    """The ``runtime.Unknown`` envelope of a protobuf body: (apiVersion, kind, raw object bytes)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("protobuf body does not start with the Kubernetes magic prefix k8s\\x00")
    decoder = _Decoder()
    type_meta: JSON = {}
    raw, encoding, inner = b"", "", ""
    for number, wire, value in iter_fields(body[len(MAGIC) :]):
        if wire != _LEN or not isinstance(value, bytes):
            raise ProtobufError(f"protobuf envelope field {number} has wire type {wire}")
        if number == 1:
            type_meta = decoder.message(value, "runtime.TypeMeta", "typeMeta", 1)
        elif number == 2:
            raw = value
        elif number == 3:
            encoding = value.decode("utf-8", "replace")
        elif number == 4:
            inner = value.decode("utf-8", "replace")
    if encoding:
        raise ProtobufError(f"unsupported protobuf content encoding {encoding!r}")
    if inner and inner != CONTENT_TYPE:
        raise ProtobufError(f"unsupported content type {inner!r} inside the protobuf envelope")
    api_version, kind = str(type_meta.get("apiVersion", "")), str(type_meta.get("kind", ""))
    if not kind or not api_version:
        raise ProtobufError("protobuf envelope has no apiVersion/kind")
    return api_version, kind, raw


def decode(body: bytes) -> Decoded:
    """A protobuf request body as the JSON object a JSON client would send.

    Raises :class:`UnsupportedKind` for a kind without a table and :class:`ProtobufError` for bytes that
    are not a well-formed Kubernetes protobuf object.
    """
    api_version, kind, raw = decode_unknown(body)
    table = KINDS.get((api_version, kind))
    if table is None:
        raise UnsupportedKind(api_version, kind)
    decoder = _Decoder()
    fields = decoder.message(raw, table, "", 0)
    obj: JSON = {"apiVersion": api_version, "kind": kind, "metadata": fields.pop("metadata", {})}
    obj.update(fields)
    if decoder.skipped:
        log.debug("protobuf %s/%s: skipped unknown fields %s", api_version, kind, decoder.skipped)
    return Decoded(obj, decoder.skipped)
