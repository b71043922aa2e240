"""The garbage collector's view of ownership: an owner→dependents graph and the pure cascade decisions.

Nothing here does IO. :class:`Graph` is folded from informer caches (every served kind but events) and
answers "who depends on this uid"; :func:`decide` says what to do with one dependent once each of its
owners has been classified (:class:`OwnerState`) — the same three-way split as upstream's
``attemptToDeleteItem``:

- **solid** owners exist (same uid) and are not being deleted in the foreground: the dependent stays;
  references to dangling or waiting owners are removed from it;
- **waiting** owners are being deleted in the foreground (``foregroundDeletion``): with no solid owner
  the dependent is deleted, in the foreground too when it has dependents of its own;
- **dangling** owners are gone (404, or the name now belongs to another uid): with every owner dangling
  the dependent is deleted, with the policy its own finalizers ask for (Background by default).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    api_version: str
    kind: str
    name: str
    uid: str
    block: bool = False
    controller: bool = False

    @classmethod
    def from_json(cls, ref: JSON) -> OwnerRef:
        return cls(
            str(ref.get("apiVersion", "")),
            str(ref.get("kind", "")),
            str(ref.get("name", "")),
            str(ref.get("uid", "")),
            bool(ref.get("blockOwnerDeletion")),
            bool(ref.get("controller")),
        )


@dataclass(frozen=True, slots=True)
class Node:
    """What the collector needs to know about one object."""

    resource: str  # "group/plural", the informer it came from
    namespace: str | None
    name: str
    uid: str
    owners: tuple[OwnerRef, ...] = ()
    deleting: bool = False
    finalizers: tuple[str, ...] = ()

    @classmethod
    def from_object(cls, resource: str, obj: JSON) -> Node:
        meta = obj.get("metadata") or {}
        return cls(
            resource,
            meta.get("namespace") or None,
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
            tuple(OwnerRef.from_json(r) for r in meta.get("ownerReferences") or [] if isinstance(r, dict)),
            bool(meta.get("deletionTimestamp")),
            tuple(str(f) for f in meta.get("finalizers") or []),
        )

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FOREGROUND in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and ORPHAN in self.finalizers


class Graph:
    """Objects by uid, and the reverse edges of their ``ownerReferences``."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def uid_of(self, resource: str, key: str) -> str | None:
        return self._by_key.get((resource, key))

    def dependents(self, owner_uid: str) -> list[Node]:
        return [self.nodes[u] for u in sorted(self._dependents.get(owner_uid, ())) if u in self.nodes]

    def blocking_dependents(self, owner_uid: str) -> list[Node]:
        """Dependents whose reference to ``owner_uid`` sets ``blockOwnerDeletion``."""
        deps = self.dependents(owner_uid)
        return [d for d in deps if any(r.uid == owner_uid and r.block for r in d.owners)]

    def upsert(self, key: str, node: Node) -> tuple[Node | None, Node | None]:
        """Record ``node`` under (resource, key).

        Returns the previous node of the same uid, and the node of another uid that held the key before."""
        replaced: Node | None = None
        old_uid = self._by_key.get((node.resource, key))
        if old_uid is not None and old_uid != node.uid:
            replaced = self._remove_uid(old_uid)
        previous = self.nodes.get(node.uid)
        if previous is not None:
            self._unlink(previous)
        self.nodes[node.uid] = node
        self._by_key[(node.resource, key)] = node.uid
        for ref in node.owners:
            self._dependents.setdefault(ref.uid, set()).add(node.uid)
        return previous, replaced

    def remove(self, resource: str, key: str) -> Node | None:
        uid = self._by_key.pop((resource, key), None)
        return None if uid is None else self._remove_uid(uid)

    def _remove_uid(self, uid: str) -> Node | None:
        node = self.nodes.pop(uid, None)
        if node is not None:
            self._unlink(node)
            self._by_key.pop((node.resource, _key(node)), None)
        return node

    def _unlink(self, node: Node) -> None:
        for ref in node.owners:
            deps = self._dependents.get(ref.uid)
            if deps is not None:
                deps.discard(node.uid)
                if not deps:
                    del self._dependents[ref.uid]


def _key(node: Node) -> str:
    return f"{node.namespace}/{node.name}" if node.namespace else node.name


def affected_by_change(old: Node | None, new: Node | None) -> set[str]:
    """Uids to look at again after one object changed (``new`` None: it is gone).

    The object itself (its owners may be gone, or it may be deleting with a GC finalizer), its owners
    (one waiting in the foreground may now be free) and, when it went away, its dependents.
    """
    if old is not None and new is not None and old == new:
        return set()
    out: set[str] = set()
    for node in (old, new):
        if node is not None:
            out.update(r.uid for r in node.owners)
    if new is not None and (new.owners or new.deleting_dependents or new.orphaning):
        out.add(new.uid)
    return out


class OwnerState(enum.StrEnum):
    SOLID = "solid"
    WAITING = "waiting"  # being deleted in the foreground: waits for its dependents
    DANGLING = "dangling"  # gone, or its name now belongs to another object


def classify(owner: Node | None, ref: OwnerRef) -> OwnerState:
    """The state of one owner from what is known about it (None: verified absent)."""
    if owner is None or owner.uid != ref.uid:
        return OwnerState.DANGLING
    return OwnerState.WAITING if owner.deleting_dependents else OwnerState.SOLID


class Verdict(enum.StrEnum):
    KEEP = "keep"
    REMOVE_REFS = "remove-refs"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    policy: str = "Background"
    remove_uids: frozenset[str] = frozenset()


def decide(node: Node, states: Mapping[str, OwnerState], has_dependents: bool) -> Decision:
    """What to do with a dependent whose owners (by uid) are in ``states``."""
    if not node.owners or node.deleting:
        return Decision(Verdict.KEEP)
    by_state: dict[OwnerState, list[str]] = {s: [] for s in OwnerState}
    for ref in node.owners:
        by_state[states.get(ref.uid, OwnerState.SOLID)].append(ref.uid)
    if by_state[OwnerState.SOLID]:
        gone = by_state[OwnerState.DANGLING] + by_state[OwnerState.WAITING]
        if not gone:
            return Decision(Verdict.KEEP)
        return Decision(Verdict.REMOVE_REFS, remove_uids=frozenset(gone))
    if by_state[OwnerState.WAITING] and has_dependents:
        return Decision(Verdict.DELETE, "Foreground")
    return Decision(Verdict.DELETE, _own_policy(node.finalizers))


def _own_policy(finalizers: Iterable[str]) -> str:
    names = set(finalizers)
    if ORPHAN in names:
        return "Orphan"
    if FOREGROUND in names:
        return "Foreground"
    return "Background"
