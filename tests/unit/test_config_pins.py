"""Config-aware rollouts, the pure part: which references a template has, when pins move, what is released."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as s

from corral.api.configrefs import CONFIG_OBSERVED, CONFIG_PINS, parse_pins, pod_spec_refs
from corral.controllers.configpins import (
    OPT_OUT,
    RELEASE_AFTER,
    content_hash,
    plan_pins,
    plan_releases,
    snapshot_body,
    snapshot_name,
    snapshot_owner,
)
from corral.controllers.rollout import CHANGE_CAUSE, SKIPPED_ANNOTATIONS

JSON = dict[str, Any]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def cm(name: str, data: dict[str, str], **extra: Any) -> JSON:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": data, **extra}


def deployment(
    pins: dict[str, str] | None = None, observed: dict[str, str] | None = None, **annotations: str
) -> JSON:
    ann: dict[str, str] = dict(annotations)
    if observed is not None:
        ann[CONFIG_OBSERVED] = json.dumps(observed)
    template_meta: JSON = {"labels": {"app": "web"}}
    if pins is not None:
        template_meta["annotations"] = {CONFIG_PINS: json.dumps(pins)}
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "annotations": ann},
        "spec": {
            "template": {
                "metadata": template_meta,
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "env": [{"name": "G", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "g"}}}],
                        }
                    ]
                },
            }
        },
    }


def pins_of(d: JSON) -> dict[str, str]:
    return parse_pins(d["spec"]["template"]["metadata"].get("annotations"))


def observed_of(d: JSON) -> dict[str, str] | None:
    raw = d["metadata"]["annotations"].get(CONFIG_OBSERVED)
    return None if raw is None else dict(json.loads(raw))


V1 = cm("app", {"g": "v1"})
V2 = cm("app", {"g": "v2"})
H1, H2 = content_hash("ConfigMap", "app", V1), content_hash("ConfigMap", "app", V2)
S1, S2 = snapshot_name("app", H1), snapshot_name("app", H2)


def snapshot_of(live: JSON, *owners: str) -> JSON:
    body = snapshot_body("ConfigMap", "app", live, snapshot_owner(deployment()))
    body["metadata"]["ownerReferences"] = [{"uid": uid, "kind": "Deployment", "name": uid} for uid in owners]
    return body


def test_every_kind_of_reference_counts_and_image_pull_secrets_do_not() -> None:
    spec = {
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
        "containers": [
            {
                "name": "c",
                "envFrom": [{"configMapRef": {"name": "env-from"}}],
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "key-secret", "key": "k"}}},
                    {"name": "B", "value": "plain"},
                ],
            }
        ],
        "volumes": [
            {"name": "v1", "configMap": {"name": "vol-cm"}},
            {"name": "v2", "secret": {"secretName": "vol-secret"}},
            {"name": "v3", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}, {"downwardAPI": {}}]}},
            {"name": "v4", "emptyDir": {}},
        ],
        "imagePullSecrets": [{"name": "registry"}],
    }
    assert pod_spec_refs(spec) == {
        ("Secret", "init-secret"),
        ("ConfigMap", "env-from"),
        ("Secret", "key-secret"),
        ("ConfigMap", "vol-cm"),
        ("Secret", "vol-secret"),
        ("ConfigMap", "proj-cm"),
    }


def test_first_sync_pins_to_a_new_snapshot_and_records_what_it_saw() -> None:
    plan = plan_pins(deployment(), {("ConfigMap", "app"): V1}, {})
    assert [(w.op, w.name) for w in plan.snapshots] == [("create", S1)]
    body = plan.snapshots[0].body
    assert body is not None and body["immutable"] is True and body["data"] == {"g": "v1"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "d-uid"
    assert "controller" not in body["metadata"]["ownerReferences"][0]
    assert plan.deployment is not None
    assert pins_of(plan.deployment) == {"ConfigMap/app": S1}
    assert observed_of(plan.deployment) == {"ConfigMap/app": H1}
    assert CHANGE_CAUSE not in plan.deployment["metadata"]["annotations"]  # the first pin is no "change"


def test_nothing_to_do_when_pinned_and_unchanged() -> None:
    d = deployment({"ConfigMap/app": S1}, {"ConfigMap/app": H1})
    plan = plan_pins(d, {("ConfigMap", "app"): V1}, {("ConfigMap", S1): snapshot_of(V1, "d-uid")})
    assert plan.deployment is None and plan.snapshots == [] and plan.events == []


def test_a_content_change_moves_the_pin_with_a_change_cause() -> None:
    d = deployment({"ConfigMap/app": S1}, {"ConfigMap/app": H1})
    plan = plan_pins(d, {("ConfigMap", "app"): V2}, {})
    assert plan.deployment is not None
    assert pins_of(plan.deployment) == {"ConfigMap/app": S2}
    assert observed_of(plan.deployment) == {"ConfigMap/app": H2}
    assert plan.deployment["metadata"]["annotations"][CHANGE_CAUSE] == "config change: ConfigMap app"
    assert [e.reason for e in plan.events] == ["ConfigChanged"]


def test_after_an_undo_older_pins_are_kept_and_the_live_hash_is_adopted() -> None:
    # kubectl rollout undo replaced the annotations with the old ReplicaSet's: no observed hashes.
    d = deployment({"ConfigMap/app": S1})
    plan = plan_pins(d, {("ConfigMap", "app"): V2}, {})
    assert plan.snapshots == []
    assert plan.deployment is not None
    assert pins_of(plan.deployment) == {"ConfigMap/app": S1}
    assert observed_of(plan.deployment) == {"ConfigMap/app": H2}
    # And the next change after that rolls forward again.
    again = plan_pins(plan.deployment, {("ConfigMap", "app"): cm("app", {"g": "v3"})}, {})
    assert again.deployment is not None and pins_of(again.deployment) != {"ConfigMap/app": S1}


def test_observed_hashes_are_never_copied_to_replica_sets() -> None:
    assert CONFIG_OBSERVED in SKIPPED_ANNOTATIONS


def test_an_existing_snapshot_is_shared_and_a_look_alike_is_refused() -> None:
    shared = plan_pins(deployment(), {("ConfigMap", "app"): V1}, {("ConfigMap", S1): snapshot_of(V1, "other")})
    assert [(w.op, w.name) for w in shared.snapshots] == [("own", S1)]
    impostor = cm(S1, {"g": "v1"})  # same name, made by someone else
    refused = plan_pins(deployment(), {("ConfigMap", "app"): V1}, {("ConfigMap", S1): impostor})
    assert refused.snapshots == [] and refused.deployment is None  # nothing pinned, nothing written
    assert [e.reason for e in refused.events] == ["ConfigSnapshotConflict"]


def test_a_missing_object_keeps_the_current_pin() -> None:
    d = deployment({"ConfigMap/app": S1}, {"ConfigMap/app": H1})
    plan = plan_pins(d, {("ConfigMap", "app"): None}, {})
    assert plan.deployment is None and plan.snapshots == []
    fresh = plan_pins(deployment(), {("ConfigMap", "app"): None}, {})
    assert fresh.deployment is None  # nothing to pin yet: pods wait for it (CreateContainerConfigError)


def test_opting_out_removes_pins_and_observed() -> None:
    d = deployment({"ConfigMap/app": S1}, {"ConfigMap/app": H1}, **{OPT_OUT: "false"})
    plan = plan_pins(d, {("ConfigMap", "app"): V2}, {})
    assert plan.deployment is not None and plan.snapshots == []
    assert pins_of(plan.deployment) == {} and observed_of(plan.deployment) is None
    assert "annotations" not in plan.deployment["spec"]["template"]["metadata"]
    assert plan_pins(deployment(**{OPT_OUT: "False"}), {("ConfigMap", "app"): V1}, {}).deployment is None


def test_a_pin_for_a_reference_the_template_dropped_is_removed() -> None:
    d = deployment({"ConfigMap/app": S1, "Secret/gone": "gone-123"}, {"ConfigMap/app": H1})
    plan = plan_pins(d, {("ConfigMap", "app"): V1}, {("ConfigMap", S1): snapshot_of(V1, "d-uid")})
    assert plan.deployment is not None and pins_of(plan.deployment) == {"ConfigMap/app": S1}


def test_secret_hash_covers_type_and_snapshot_keeps_type() -> None:
    a = {"kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "type": "Opaque", "data": {"k": "dg=="}}
    b = {**a, "type": "kubernetes.io/basic-auth"}
    assert content_hash("Secret", "s", a) != content_hash("Secret", "s", b)
    body = snapshot_body("Secret", "s", b, snapshot_owner(deployment()))
    assert body["type"] == "kubernetes.io/basic-auth" and body["data"] == {"k": "dg=="}


def test_snapshot_names_stay_valid_for_long_names() -> None:
    long = "a" * 250
    name = snapshot_name(long, "0123456789")
    assert len(name) <= 253 and name.endswith("-0123456789")


@given(s.dictionaries(s.text(min_size=1, max_size=5), s.text(max_size=5), max_size=4))
def test_hash_depends_on_content_only_not_on_key_order(data: dict[str, str]) -> None:
    forward = cm("app", dict(data))
    backward = cm("app", dict(reversed(list(data.items()))), metadata={"name": "app", "labels": {"x": "y"}})
    assert content_hash("ConfigMap", "app", forward) == content_hash("ConfigMap", "app", backward)


def _owned(name: str, age: timedelta, *owners: str) -> tuple[str, JSON]:
    return (
        "ConfigMap",
        {
            "metadata": {
                "name": name,
                "creationTimestamp": (NOW - age).isoformat().replace("+00:00", "Z"),
                "ownerReferences": [{"uid": uid} for uid in owners],
            }
        },
    )


def test_releases_only_unpinned_old_snapshots() -> None:
    d = deployment({"ConfigMap/app": "app-new"})
    rs_old = deployment({"ConfigMap/app": "app-old"})
    old_enough = RELEASE_AFTER + timedelta(seconds=1)
    owned = [
        _owned("app-new", old_enough, "d-uid"),
        _owned("app-old", old_enough, "d-uid"),
        _owned("app-orphan", old_enough, "d-uid"),
        _owned("app-shared", old_enough, "d-uid", "other-uid"),
        _owned("app-young", timedelta(seconds=1), "d-uid"),
    ]
    writes = plan_releases(d, [rs_old], owned, NOW)
    assert [(w.name, w.delete) for w in writes] == [("app-orphan", True), ("app-shared", False)]


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"ConfigMap/a": 3}'])
def test_malformed_pins_count_as_none(raw: str) -> None:
    assert parse_pins({CONFIG_PINS: raw}) == {}
