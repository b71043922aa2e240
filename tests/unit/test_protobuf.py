"""Decoding kubectl's protobuf request bodies into the JSON a JSON client would send.

``fixtures/protobuf/*.hex`` are real bodies from kubectl 1.32.4 (``kubectl create …``, ``autoscale``), recorded
by a loopback capture proxy in front of a Corral server. The other bodies are built here with a tiny encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from corral.apiserver import protobuf as pb
from corral.apiserver import status as st
from corral.apiserver.handlers import BODY_TYPES, decode_protobuf_body

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"

# ------------------------------------------------------------------------------ a tiny test-side encoder


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative ints are 10-byte two's complement, as Go writes them
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def num(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def ld(number: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return tag(number, 2) + varint(len(raw)) + raw


def entry(number: int, key: str, value: bytes | str) -> bytes:
    return ld(number, ld(1, key) + ld(2, value))


def int_or_string(value: int | str) -> bytes:
    if isinstance(value, int):
        return num(1, 0) + num(2, value) + ld(3, "")
    return num(1, 1) + num(2, 0) + ld(3, value)


def go_meta(name: str, *extra: bytes) -> bytes:
    """ObjectMeta as go-to-protobuf writes it: every non-pointer field, zero values included."""
    return (
        ld(1, name)
        + ld(2, "")
        + ld(3, "")
        + ld(4, "")
        + ld(5, "")
        + ld(6, "")
        + num(7, 0)
        + ld(8, b"")
        + b"".join(extra)
    )


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + ld(3, "") + ld(4, "")


def decode(api_version: str, kind: str, raw: bytes) -> dict[str, Any]:
    return pb.decode(envelope(api_version, kind, raw)).obj


# ---------------------------------------------------------------------------- real kubectl 1.32 bodies

EXPECTED: dict[str, dict[str, Any]] = {
    "create-namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
    "create-configmap": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg2"},
        "data": {"empty": "", "k": "v"},
    },
    "create-configmap-binary": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfgbin"},
        "data": {"a": "b"},
        "binaryData": {"blob": "YmluAP8B"},
    },
    "create-secret-generic": {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s1"},
        "data": {"pw": "cEBzcw==", "user": "YWRtaW4="},
    },
    "create-secret-from-file": {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s2"},
        "data": {"blob": "YmluAP8B"},
        "type": "Opaque",
    },
    "create-service-clusterip": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
        "spec": {
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "svc1"},
            "type": "ClusterIP",
        },
    },
    "create-service-nodeport-named-target": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc2", "labels": {"app": "svc2"}},
        "spec": {
            "ports": [{"name": "81-web", "protocol": "TCP", "port": 81, "targetPort": "web"}],
            "selector": {"app": "svc2"},
            "type": "NodePort",
        },
    },
    "create-service-externalname": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ext1", "labels": {"app": "ext1"}},
        "spec": {"selector": {"app": "ext1"}, "type": "ExternalName", "externalName": "example.com"},
    },
    "create-serviceaccount": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}},
    "create-deployment-command-replicas0": {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "imp", "labels": {"app": "imp"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "imp"}},
            "template": {
                "metadata": {"labels": {"app": "imp"}},
                "spec": {"containers": [{"name": "busybox", "image": "busybox", "command": ["sleep", "10"]}]},
            },
        },
    },
    "create-deployment-port": {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 8080}]}]
                },
            },
        },
    },
    "create-deployment-two-images": {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "multi", "labels": {"app": "multi"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "multi"}},
            "template": {
                "metadata": {"labels": {"app": "multi"}},
                "spec": {
                    "containers": [
                        {"name": "busybox", "image": "busybox"},
                        {"name": "nginx", "image": "nginx"},
                    ]
                },
            },
        },
    },
    "create-job": {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j1"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "j1", "image": "busybox", "command": ["echo", "hi"]}],
                    "restartPolicy": "Never",
                }
            }
        },
    },
    "create-cronjob": {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "cj2"},
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": {
                "metadata": {"name": "cj2"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "cj2", "image": "busybox", "command": ["echo", "hi"]}],
                            "restartPolicy": "OnFailure",
                        }
                    }
                },
            },
        },
    },
    "autoscale-deployment": {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "d1"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "d1", "apiVersion": "apps/v1"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50,
        },
    },
    # The template came from a server-defaulted CronJob: probes, volumes, env sources, resources.
    "create-job-from-cronjob": {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "j2",
            "labels": {"tier": "batch"},
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "note": "x"},
            "ownerReferences": [
                {
                    "kind": "CronJob",
                    "name": "cj1",
                    "uid": "3c32cad3-959f-4555-946c-deba5b0985db",
                    "apiVersion": "batch/v1",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "cfg2", "defaultMode": 420}},
                    ],
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "command": ["sh", "-c", "echo hi"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "env": [
                                {"name": "A", "value": "1"},
                                {
                                    "name": "POD",
                                    "valueFrom": {
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
                                    },
                                },
                                {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg2", "key": "k"}}},
                            ],
                            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                            "livenessProbe": {
                                "httpGet": {"path": "/h", "port": "http", "scheme": "HTTP"},
                                "initialDelaySeconds": 3,
                                "timeoutSeconds": 1,
                                "periodSeconds": 10,
                                "successThreshold": 1,
                                "failureThreshold": 3,
                            },
                            "readinessProbe": {
                                "exec": {"command": ["true"]},
                                "timeoutSeconds": 1,
                                "periodSeconds": 5,
                                "successThreshold": 1,
                                "failureThreshold": 3,
                            },
                            "terminationMessagePath": "/dev/termination-log",
                            "imagePullPolicy": "Always",
                            "terminationMessagePolicy": "File",
                            "startupProbe": {
                                "tcpSocket": {"port": 8080},
                                "timeoutSeconds": 1,
                                "periodSeconds": 10,
                                "successThreshold": 1,
                                "failureThreshold": 3,
                            },
                        }
                    ],
                    "restartPolicy": "OnFailure",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler",
                }
            },
            "backoffLimit": 0,
        },
    },
}


def _fixture(name: str) -> bytes:
    return bytes.fromhex((FIXTURES / f"{name}.hex").read_text().replace("\n", ""))


def test_every_fixture_has_an_expectation() -> None:
    assert {p.stem for p in FIXTURES.glob("*.hex")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_kubectl_bodies_decode_to_the_json_kubectl_would_send(name: str) -> None:
    decoded = pb.decode(_fixture(name))
    assert decoded.obj == EXPECTED[name]
    # Only status blocks (field 3 of the object) are left out; every spec field kubectl sent is known.
    assert set(decoded.skipped) <= {"3"}


def test_envelope_carries_type_meta() -> None:
    api_version, kind, raw = pb.decode_unknown(_fixture("create-configmap"))
    assert (api_version, kind) == ("v1", "ConfigMap")
    assert raw.startswith(b"\x0a")  # ObjectMeta, field 1


# ---------------------------------------------------------------------------------- encoder-built bodies


def test_go_zero_values_are_dropped_but_pointer_zeros_kept() -> None:
    container = ld(1, "c") + ld(2, "img") + ld(6, ld(1, "") + num(2, 0) + num(3, 80) + ld(4, "TCP"))
    container += ld(5, "") + ld(8, b"") + num(16, 0) + num(18, 0)
    pod_spec = ld(2, container) + ld(3, "") + ld(6, "")
    rolling = ld(1, int_or_string(0)) + ld(2, int_or_string("25%"))
    spec = (
        num(1, 0)  # replicas: *int32 → kept
        + ld(2, b"")  # selector: *LabelSelector, empty → kept as {}
        + ld(3, ld(1, go_meta("")) + ld(2, pod_spec))
        + ld(4, ld(1, "RollingUpdate") + ld(2, rolling))
        + num(5, 0)  # minReadySeconds: value field → dropped
        + num(6, 0)  # revisionHistoryLimit: *int32 → kept
        + num(7, 0)  # paused: bool → dropped
    )
    obj = decode("apps/v1", "Deployment", ld(1, go_meta("d")) + ld(2, spec))
    assert obj == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 0,
            "selector": {},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "img", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
                    ]
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 0,
        },
    }


def test_embedded_go_structs_are_inlined() -> None:
    probe = ld(1, ld(2, ld(1, "/healthz") + ld(2, int_or_string("http")))) + num(4, 7)
    env = ld(1, "K") + ld(2, "") + ld(3, ld(4, ld(1, ld(1, "creds")) + ld(2, "password")))
    env_from = ld(1, "P_") + ld(2, ld(1, ld(1, "settings")))
    container = ld(1, "c") + ld(7, env) + ld(19, env_from) + ld(11, probe)
    volume = ld(1, "v") + ld(2, ld(19, ld(1, ld(1, "settings")) + num(3, 0o644)))
    raw = ld(1, go_meta("p")) + ld(2, ld(1, volume) + ld(2, container))
    spec = decode("v1", "Pod", raw)["spec"]
    assert spec["volumes"] == [{"name": "v", "configMap": {"name": "settings", "defaultMode": 420}}]
    c = spec["containers"][0]
    assert c["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 7}
    assert c["env"] == [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]
    assert c["envFrom"] == [{"prefix": "P_", "configMapRef": {"name": "settings"}}]


def test_time_becomes_rfc3339_and_a_zero_time_is_omitted() -> None:
    meta = ld(1, "n") + ld(8, num(1, 1_700_000_000) + num(2, 5)) + ld(9, b"")
    obj = decode("v1", "ConfigMap", ld(1, meta))
    assert obj["metadata"] == {"name": "n", "creationTimestamp": "2023-11-14T22:13:20Z"}


def test_negative_ints_packed_and_unpacked_repeated_scalars() -> None:
    security = num(2, -1) + ld(4, varint(1) + varint(2)) + num(4, 3000)
    spec = ld(2, ld(1, "c")) + num(4, -1) + ld(14, security)
    spec_out = decode("v1", "Pod", ld(1, go_meta("p")) + ld(2, spec))["spec"]
    assert spec_out["terminationGracePeriodSeconds"] == -1
    assert spec_out["securityContext"] == {"runAsUser": -1, "supplementalGroups": [1, 2, 3000]}


def test_int32_wraps_like_go() -> None:
    hpa = ld(2, ld(1, ld(1, "Deployment") + ld(2, "d")) + num(3, -5) + num(2, 2**32 + 4))
    spec = decode("autoscaling/v1", "HorizontalPodAutoscaler", ld(1, go_meta("h")) + hpa)["spec"]
    assert spec["maxReplicas"] == -5 and spec["minReplicas"] == 4


def test_unknown_fields_of_every_wire_type_are_skipped_and_reported() -> None:
    noise = num(99, 1) + tag(98, 5) + b"\x01\x02\x03\x04" + tag(97, 1) + bytes(8) + ld(96, b"\x08\x01")
    raw = ld(1, go_meta("s") + noise) + ld(2, ld(1, ld(1, "80")) + noise) + ld(3, b"status")
    decoded = pb.decode(envelope("v1", "Service", raw))
    assert decoded.obj["spec"] == {"ports": [{"name": "80"}]}
    assert decoded.skipped == [
        "metadata.99",
        "metadata.98",
        "metadata.97",
        "metadata.96",
        "spec.99",
        "spec.98",
        "spec.97",
        "spec.96",
        "3",
    ]


def test_maps_bytes_quantities_and_entries_without_a_value() -> None:
    secret = (
        ld(1, go_meta("s")) + entry(2, "bin", b"\x00\xff") + ld(2, ld(1, "empty")) + entry(4, "plain", "x")
    )
    obj = decode("v1", "Secret", secret + num(5, 0))
    assert obj["data"] == {"bin": "AP8=", "empty": ""}
    assert obj["stringData"] == {"plain": "x"}
    assert obj["immutable"] is False  # *bool: an explicit false is kept
    quantity = ld(1, "500m")
    resources = ld(8, ld(1, ld(1, "cpu") + ld(2, quantity)) + ld(2, ld(1, "memory") + ld(2, ld(1, "1Gi"))))
    pod = decode("v1", "Pod", ld(1, go_meta("p")) + ld(2, ld(2, ld(1, "c") + resources)))
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m"},
        "requests": {"memory": "1Gi"},
    }


def test_a_repeated_message_field_merges_like_protobuf() -> None:
    raw = ld(1, ld(1, "n")) + ld(1, entry(11, "a", "b"))
    assert decode("v1", "ConfigMap", raw)["metadata"] == {"name": "n", "labels": {"a": "b"}}


@given(
    data=hs.dictionaries(hs.text(min_size=1, max_size=8), hs.text(max_size=20), max_size=5),
    binary=hs.dictionaries(hs.text(min_size=1, max_size=8), hs.binary(max_size=20), max_size=5),
    name=hs.text(min_size=1, max_size=20),
)
def test_configmap_round_trip(data: dict[str, str], binary: dict[str, bytes], name: str) -> None:
    import base64

    raw = ld(1, go_meta(name))
    raw += b"".join(entry(2, k, v) for k, v in data.items())
    raw += b"".join(entry(3, k, v) for k, v in binary.items())
    obj = decode("v1", "ConfigMap", raw)
    assert obj["metadata"] == {"name": name}
    assert obj.get("data", {}) == data
    assert obj.get("binaryData", {}) == {k: base64.b64encode(v).decode() for k, v in binary.items()}


# ------------------------------------------------------------------------------------------------ errors

GOOD_META = ld(1, ld(1, "n"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"kind":"ConfigMap"}', "magic prefix"),
        (b"k8s\x00\x0a\x0b", "runs past the end"),
        (b"k8s\x00\x0a", "truncated varint"),
        (b"k8s\x00" + b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"k8s\x00" + num(1, 5), "wire type 0"),
        (b"k8s\x00" + ld(2, GOOD_META), "no apiVersion/kind"),
        (envelope("v1", "ConfigMap", tag(1, 3)), "unsupported wire type 3"),
        (envelope("v1", "ConfigMap", tag(0, 0) + b"\x00"), "field number 0"),
        (envelope("v1", "ConfigMap", num(1, 5)), "metadata: wire type 0"),
        (envelope("v1", "ConfigMap", ld(1, ld(1, b"\xff\xfe"))), "metadata.name: string is not valid UTF-8"),
        (envelope("v1", "ConfigMap", ld(1, tag(7, 1) + b"\x00")), "truncated 64-bit"),
        (envelope("v1", "ConfigMap", ld(1, tag(7, 5) + b"\x00")), "truncated 32-bit"),
        (envelope("v1", "ConfigMap", num(2, 1)), "data: map entry has wire type 0"),
        (
            b"k8s\x00" + ld(1, ld(1, "v1") + ld(2, "ConfigMap")) + ld(2, GOOD_META) + ld(3, "gzip"),
            "content encoding 'gzip'",
        ),
    ],
)
def test_malformed_bodies_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(pb.ProtobufError) as info:
        pb.decode(body)
    assert not isinstance(info.value, pb.UnsupportedKind)
    assert message in str(info.value)


def test_a_kind_without_a_table_is_unsupported() -> None:
    with pytest.raises(pb.UnsupportedKind) as info:
        pb.decode(envelope("rbac.authorization.k8s.io/v1", "Role", GOOD_META))
    assert (info.value.api_version, info.value.kind) == ("rbac.authorization.k8s.io/v1", "Role")


def test_handler_maps_errors_to_415_and_400() -> None:
    assert decode_protobuf_body(_fixture("create-namespace"), BODY_TYPES)["kind"] == "Namespace"
    with pytest.raises(st.ApiError) as unsupported:
        decode_protobuf_body(envelope("v1", "LimitRange", GOOD_META), BODY_TYPES)
    assert unsupported.value.code == 415
    assert "unknown format" in unsupported.value.body().decode()
    assert pb.CONTENT_TYPE not in unsupported.value.body().decode()
    with pytest.raises(st.ApiError) as malformed:
        decode_protobuf_body(b"k8s\x00\x0a\x0b", BODY_TYPES)
    assert malformed.value.code == 400
    assert "could not be decoded as protobuf" in malformed.value.body().decode()


def test_every_table_reference_resolves() -> None:
    for table_name, table in pb.MESSAGES.items():
        for number, f in table.items():
            assert number > 0
            if f.kind == "message":
                assert f.message in pb.MESSAGES, (table_name, f.name)
    assert all(table in pb.MESSAGES for table in pb.KINDS.values())
