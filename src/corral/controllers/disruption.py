"""Disruption controller: keeps every PodDisruptionBudget's ``status`` current (upstream's disruption
controller), which is what the eviction subresource (``apiserver/eviction.py``) trusts.

IO around the pure planner ``corral.controllers.disruptionplan`` (read it for the arithmetic). Level-
triggered, keyed by budget (``namespace/name``):

- A budget change enqueues itself. A pod, ReplicaSet or Deployment change enqueues every budget of its
  namespace: a relabelled pod may leave one budget and join another, a scale change moves percentages, and
  namespaces hold few budgets, so re-planning them all is cheaper than tracking who selected what before.
- ``reconcile`` reads the caches, plans, and writes ``/status`` with the resourceVersion it planned from:
  the eviction handler decrements ``disruptionsAllowed`` with compare-and-set too, so a stale plan costs a
  conflict and a re-plan, never a lost eviction record. When an eviction recorded in ``disruptedPods`` will
  expire, the budget is looked at again then.
- Expected pods for percentages and ``maxUnavailable`` come from the pods' controllers in the caches: a
  Deployment's ``spec.replicas`` for pods of its ReplicaSets, else the ReplicaSet's. A pod controlled by a
  kind without a scale (a Job) fails the computation: the status then fails safe (no disruption allowed,
  condition reason ``SyncFailed``) and a Warning event says why.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from corral.api.resources import REGISTRY
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.controllers.disruptionplan import (
    BudgetPlan,
    ControllerScale,
    ExpectedCountError,
    plan_budget,
)
from corral.controllers.events import EventRecorder
from corral.controllers.runtime import ControllerManager
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
PDBS = REGISTRY.require("poddisruptionbudgets.policy")
PODS = REGISTRY.require("pods")
REPLICA_SETS = REGISTRY.require("replicasets.apps")
DEPLOYMENTS = REGISTRY.require("deployments.apps")

# Owner kinds that exist here but have no scale subresource (upstream's getScaleController then fails).
_NO_SCALE = {"Job": "jobs.batch", "CronJob": "cronjobs.batch"}


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _meta(obj: Mapping[str, Any]) -> JSON:
    return _d(obj.get("metadata"))


def _replicas(obj: Mapping[str, Any]) -> int:
    value = _d(obj.get("spec")).get("replicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _group(api_version: Any) -> str:
    text = str(api_version or "")
    return text.split("/", 1)[0] if "/" in text else ""


class DisruptionController:
    name = "disruption-controller"
    workers = 2

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.events = EventRecorder(transport, "controllermanager", self.clock)
        self.pdbs: Informer | None = None
        self.pods: Informer | None = None
        self.replica_sets: Informer | None = None
        self.deployments: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.pdbs = manager.watch(self, PDBS)
        self.pods = manager.watch(self, PODS, self._budgets_of_namespace)
        self.replica_sets = manager.watch(self, REPLICA_SETS, self._budgets_of_namespace)
        self.deployments = manager.watch(self, DEPLOYMENTS, self._budgets_of_namespace)

    def _budgets_of_namespace(self, obj: JSON) -> list[str]:
        if self.pdbs is None:
            return []
        budgets = self.pdbs.keys()  # an Informer method (a list copy), not a dict view
        if not budgets:
            return budgets  # the common case, on every pod event
        namespace = _meta(obj).get("namespace")
        return [key for key in budgets if key.partition("/")[0] == namespace]

    def scale_of(self, namespace: str, ref: Mapping[str, Any]) -> ControllerScale | None:
        """The scale that counts for pods controlled by ``ref`` (upstream's finders, over the caches)."""
        assert self.replica_sets is not None and self.deployments is not None
        kind, group, uid = ref.get("kind"), _group(ref.get("apiVersion")), str(ref.get("uid", ""))
        if kind in _NO_SCALE and group == "batch":
            raise ExpectedCountError(f"{_NO_SCALE[str(kind)]} does not implement the scale subresource")
        if kind != "ReplicaSet" or group != "apps":
            return None
        rs = self.replica_sets.get(f"{namespace}/{ref.get('name')}")
        if rs is None or _meta(rs).get("uid") != uid:
            return None
        for owner in _meta(rs).get("ownerReferences") or []:
            owner = _d(owner)
            if owner.get("controller") is True and owner.get("kind") == "Deployment":
                deployment = self.deployments.get(f"{namespace}/{owner.get('name')}")
                if deployment is None or _meta(deployment).get("uid") != owner.get("uid"):
                    return None
                return str(owner.get("uid")), _replicas(deployment)
        return uid, _replicas(rs)

    async def reconcile(self, key: str) -> float | None:
        assert self.pdbs is not None and self.pods is not None
        pdb = self.pdbs.get(key)
        if pdb is None:
            return None
        namespace = key.partition("/")[0]
        pods = [p for p in self.pods.list() if _meta(p).get("namespace") == namespace]
        plan = plan_budget(pdb, pods, self.clock.now(), self.scale_of)
        if plan.status is not None:
            updated = copy.deepcopy(pdb)
            updated["status"] = plan.status
            await self.transport.update(
                PDBS, namespace, str(_meta(pdb).get("name")), updated, subresource="status"
            )
        await self._record(pdb, plan)
        return plan.recheck_after

    async def _record(self, pdb: JSON, plan: BudgetPlan) -> None:
        involved = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", **pdb}
        for event in plan.events:
            if event.pod is None:
                await self.events.record(involved, event.type, event.reason, event.message)
                continue
            assert self.pods is not None
            pod = self.pods.get(f"{_meta(pdb).get('namespace')}/{event.pod}")
            if pod is not None:
                await self.events.record(
                    {"apiVersion": "v1", "kind": "Pod", **pod}, event.type, event.reason, event.message
                )
