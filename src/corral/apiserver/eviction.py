"""The ``pods/eviction`` subresource: delete a pod unless that would break its PodDisruptionBudget.

Upstream's ``EvictionREST.Create`` (``pkg/registry/core/pod/storage/eviction.go``, Kubernetes 1.32), over
:class:`ResourceAPI` so every read and write goes through the one validation path:

1. A pod that is Pending, Succeeded, Failed or already being deleted has no budget to respect: it is
   deleted (pinned to the resourceVersion read, so it cannot become Ready in between).
2. Otherwise the budgets of its namespace that select it are found (``disruptionplan.selects``). More than
   one → 500 ``This pod has more than one PodDisruptionBudget…``. None → the pod is deleted.
3. A pod that is not Ready is deleted without touching the budget when the budget's
   ``unhealthyPodEvictionPolicy`` is ``AlwaysAllow``, or when the application is healthy anyway
   (``currentHealthy >= desiredHealthy > 0``), again pinned to the pod's resourceVersion.
4. Otherwise the budget is checked and decremented: ``disruptionsAllowed == 0`` → 429 TooManyRequests
   with a ``DisruptionBudget`` cause saying how many healthy pods it needs; a status the disruption
   controller has not caught up with (``observedGeneration < generation``) → 429 too. Else
   ``disruptionsAllowed`` goes down by one and ``disruptedPods[pod] = now`` is written with
   compare-and-set on the budget's resourceVersion (a lost race re-reads and re-checks, up to 20 times),
   and only then is the pod deleted. Two concurrent evictions therefore never both spend the last
   allowed disruption.

The request body is a ``policy/v1`` (or ``policy/v1beta1``) Eviction whose ``metadata.name`` must equal the
pod's, with optional ``deleteOptions``. Success is ``201`` with a ``Success`` Status, as upstream.
Boundary: no HTTP here (the handler passes the decoded body and the write options in).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from corral.api import schema
from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.apiserver.rest import DeleteOptions, ResourceAPI, WriteOptions
from corral.controllers.disruptionplan import budgets_for_pod, is_pod_ready, with_condition
from corral.util.clock import rfc3339

JSON = dict[str, Any]
PODS = REGISTRY.require("pods")
PDBS = REGISTRY.require("poddisruptionbudgets.policy")
EVICTION_DEFINITION = "io.k8s.api.policy.v1.Eviction"
ACCEPTED_API_VERSIONS = ("policy/v1", "policy/v1beta1")
MAX_DISRUPTED_POD_SIZE = 2000
"""Past this many unconfirmed evictions in ``disruptedPods`` the budget refuses more (upstream's bound)."""
_RETRIES = 20  # upstream EvictionsRetry.Steps

VIOLATION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_BUDGETS_MESSAGE = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _meta(obj: Mapping[str, Any]) -> JSON:
    return _d(obj.get("metadata"))


def success_status() -> JSON:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def multiple_budgets_status() -> JSON:
    # Upstream returns this Status as the result (no reason); the HTTP code is taken from it.
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": MULTIPLE_BUDGETS_MESSAGE,
        "code": 500,
    }


def too_many_requests(cause: str, retry_after: int = 0) -> st.ApiError:
    """``errors.NewTooManyRequests`` with the ``DisruptionBudget`` cause eviction adds."""
    return st.ApiError(
        429,
        "TooManyRequests",
        VIOLATION_MESSAGE,
        causes=[st.Cause(DISRUPTION_BUDGET_CAUSE, cause)],
        retry_after=retry_after,
    )


def still_processing(pdb_name: str) -> st.ApiError:
    return too_many_requests(f"The disruption budget {pdb_name} is still being processed by the server.", 10)


def _forbidden(pdb_name: str, why: str) -> st.ApiError:
    return st.ApiError(
        403,
        "Forbidden",
        f'poddisruptionbudget.policy "{pdb_name}" is forbidden: {why}',
        pdb_name,
        "policy",
        "poddisruptionbudget",
    )


# ------------------------------------------------------------------------------------------ decoding


def _delete_options(raw: Any, query_dry_run: bool) -> DeleteOptions:
    """The eviction's ``deleteOptions`` with the request's dryRun propagated (upstream propagateDryRun).

    Both places only ever accept ``All``, so they cannot disagree: either one asks for a dry run."""
    if raw is None:
        return DeleteOptions(dry_run=query_dry_run)
    if not isinstance(raw, dict):
        raise st.bad_request("deleteOptions must be an object")
    body_dry_run = [str(v) for v in raw.get("dryRun") or []]
    for value in body_dry_run:
        if value != "All":
            raise st.bad_request(f'Invalid dryRun value {value!r}: supported values: "All"')
    policy = raw.get("propagationPolicy") or "Background"
    if raw.get("orphanDependents") is True:
        policy = "Orphan"
    grace = raw.get("gracePeriodSeconds")
    preconditions = _d(raw.get("preconditions"))
    return DeleteOptions(
        propagation_policy=str(policy),
        grace_period_seconds=int(grace) if isinstance(grace, int) and not isinstance(grace, bool) else None,
        precondition_uid=preconditions.get("uid") or None,
        precondition_rv=preconditions.get("resourceVersion") or None,
        dry_run=query_dry_run or bool(body_dry_run),
    )


def decode_eviction(body: Any, name: str, opts: WriteOptions) -> tuple[DeleteOptions, list[str]]:
    """Check an Eviction body for pod ``name``; returns its delete options and unknown-field warnings."""
    if not isinstance(body, dict):
        raise st.bad_request(
            f"the body of the request was not a valid Eviction object: expected a JSON object, "
            f"got {type(body).__name__}"
        )
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind not in (None, "", "Eviction"):
        raise st.bad_request(
            f'no kind "{kind}" is registered for the eviction subresource (expected Eviction)'
        )
    if api_version not in (None, "", *ACCEPTED_API_VERSIONS):
        raise st.bad_request(
            f"the API version in the data ({api_version}) is not accepted by the eviction subresource: "
            f'use "policy/v1" (or "policy/v1beta1")'
        )
    pruned, unknown = schema.prune_unknown(EVICTION_DEFINITION, body)
    warnings: list[str] = []
    if unknown:
        if opts.field_validation == "Strict":
            raise st.bad_request(
                "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown)
            )
        if opts.field_validation in ("Warn", ""):
            warnings = [f'unknown field "{p}"' for p in unknown]
    pruned["kind"], pruned["apiVersion"] = "Eviction", "policy/v1"
    violations = schema.validate(EVICTION_DEFINITION, pruned, strict=False)
    if violations:
        detail = "; ".join(f"{v.path or '<root>'}: {v.message}" for v in violations[:5])
        raise st.bad_request(f'Eviction in version "v1" cannot be handled as a Eviction: {detail}')
    if _meta(pruned).get("name") != name:
        raise st.bad_request("name in URL does not match name in Eviction object")
    return _delete_options(pruned.get("deleteOptions"), opts.dry_run), warnings


# ------------------------------------------------------------------------------------------ decisions


def can_ignore_budget(pod: Mapping[str, Any]) -> bool:
    """Terminal, pending or already-terminating pods are deleted without consulting any budget."""
    phase = _d(pod.get("status")).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(_meta(pod).get("deletionTimestamp"))


def _should_pin_resource_version(pod: Mapping[str, Any]) -> bool:
    phase = _d(pod.get("status")).get("phase")
    return phase not in ("Succeeded", "Failed") and not _meta(pod).get("deletionTimestamp")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def unhealthy_pod_may_go(pdb: Mapping[str, Any]) -> bool:
    """Whether a pod that is not Ready may be evicted without spending a disruption."""
    spec, status = _d(pdb.get("spec")), _d(pdb.get("status"))
    if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    desired = _int(status.get("desiredHealthy"))
    return _int(status.get("currentHealthy")) >= desired and desired > 0


def check_and_decrement(pdb: Mapping[str, Any], pod_name: str, now: datetime, dry_run: bool) -> JSON:
    """The budget after granting one disruption for ``pod_name``; raises the 429/403 upstream raises."""
    meta, status = _meta(pdb), _d(pdb.get("status"))
    name = str(meta.get("name", ""))
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        raise still_processing(name)
    allowed = _int(status.get("disruptionsAllowed"))
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    if len(_d(status.get("disruptedPods"))) > MAX_DISRUPTED_POD_SIZE:
        raise _forbidden(
            name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )
    if allowed == 0:
        raise too_many_requests(
            f"The disruption budget {name} needs {_int(status.get('desiredHealthy'))} healthy pods "
            f"and has {_int(status.get('currentHealthy'))} currently"
        )
    updated = copy.deepcopy(dict(pdb))
    new_status = updated.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        new_status["conditions"] = with_condition(
            new_status.get("conditions"),
            "False",
            "InsufficientPods",
            "",
            _int(new_status.get("observedGeneration")),
            now,
        )
    if not dry_run:
        disrupted = dict(_d(new_status.get("disruptedPods")))
        disrupted[pod_name] = rfc3339(now)
        new_status["disruptedPods"] = disrupted
    return updated


# ------------------------------------------------------------------------------------------ the request


async def evict(
    api: ResourceAPI, namespace: str, name: str, body: Any, opts: WriteOptions
) -> tuple[int, JSON, list[str]]:
    """Evict pod ``namespace/name``: (HTTP code, Status body, warnings), or raises :class:`st.ApiError`."""
    delete_opts, warnings = decode_eviction(body, name, opts)
    caller_pinned = delete_opts.precondition_rv is not None
    pod: JSON = {}
    for _ in range(_RETRIES):
        pod = await api.get(PODS, namespace, name)
        if not can_ignore_budget(pod):
            break
        pinned = delete_opts
        if _should_pin_resource_version(pod) and not caller_pinned:
            pinned = replace(delete_opts, precondition_rv=str(_meta(pod).get("resourceVersion", "")))
        try:
            await api.delete(PODS, namespace, name, pinned)
        except st.ApiError as exc:
            if exc.reason == "Conflict" and not caller_pinned:
                continue  # the pod changed since we read it: look again
            raise
        return 201, success_status(), warnings
    else:
        raise st.conflict(PODS, name, "too many concurrent writers; retry")

    listed = await api.list(PDBS, namespace)
    budgets = budgets_for_pod(listed.items, pod)
    if len(budgets) > 1:
        return 500, multiple_budgets_status(), warnings
    pin_pod = False
    pdb_name = ""
    if budgets:
        pdb: JSON = dict(budgets[0])
        pdb_name = str(_meta(pdb).get("name", ""))
        if not is_pod_ready(pod) and unhealthy_pod_may_go(pdb):
            pin_pod = True
        else:
            await _spend_disruption(api, namespace, pdb, name, delete_opts.dry_run)
    final = delete_opts
    if pin_pod and not caller_pinned:
        final = replace(delete_opts, precondition_rv=str(_meta(pod).get("resourceVersion", "")))
    try:
        await api.delete(PODS, namespace, name, final)
    except st.ApiError as exc:
        if exc.reason == "Conflict" and pin_pod and not caller_pinned:
            # The pod changed (perhaps became Ready) since the budget was consulted: let the client retry.
            raise still_processing(pdb_name) from exc
        raise
    return 201, success_status(), warnings


async def _spend_disruption(
    api: ResourceAPI, namespace: str, pdb: JSON, pod_name: str, dry_run: bool
) -> None:
    """Decrement the budget with compare-and-set, re-reading it after each lost race."""
    pdb_name = str(_meta(pdb).get("name", ""))
    for attempt in range(_RETRIES):
        if attempt:
            pdb = await api.get(PDBS, namespace, pdb_name)
        updated = check_and_decrement(pdb, pod_name, api.clock.now(), dry_run)
        if dry_run:
            return
        try:
            await api.update(PDBS, namespace, pdb_name, updated, subresource="status")
        except st.ApiError as exc:
            if exc.reason == "Conflict":
                continue
            raise
        return
    raise st.ApiError(
        504,
        "Timeout",
        f'Timeout: couldn\'t update PodDisruptionBudget "{pdb_name}" due to conflicts',
        retry_after=10,
    )
