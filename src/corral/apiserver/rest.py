"""The generic resource API: create, read, list, update, patch, delete and watch objects of any served kind.

This is the one validation path of Corral: the HTTP handlers call it, and so does the in-process client
transport, so a controller running inside ``corral up`` goes through exactly the same checks as kubectl.
It knows nothing about HTTP; it raises :class:`ApiError` and returns plain dicts. Everything it stores goes
through the Store protocol with compare-and-set on ``resourceVersion``.

Order of a write (as in the real apiserver): decode checks (kind, apiVersion, unknown fields per
``fieldValidation``, structural schema) → namespace and name → strategy (server metadata, status rules,
generation) → defaulting → semantic validation → store CAS write (skipped for ``dryRun=All``).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import copy
import functools
import ipaddress
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from corral.api import schema
from corral.api.conversion import from_storage, needs_conversion, to_storage
from corral.api.defaults import apply_defaults
from corral.api.resources import REGISTRY, ResourceType
from corral.api.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    field_value,
    format_selector_object,
    parse_field_selector,
    parse_label_selector,
)
from corral.api.strategy import mark_deleting, prepare_for_create, prepare_for_update
from corral.api.validation import validate_object, validate_update
from corral.apiserver import status as st
from corral.apiserver.patch import PatchError
from corral.apiserver.patch.apply import apply_patch
from corral.apiserver.patch.jsonpatch import apply_json_patch
from corral.apiserver.patch.merge import apply_merge_patch
from corral.apiserver.patch.strategic import apply_strategic_merge_patch
from corral.store.base import AlreadyExists, Conflict, Event, EventType, Expired, NotFound, Store, Trigger
from corral.util.clock import Clock, SystemClock
from corral.util.ids import IdSource, RandomIds
from corral.util.jsoncopy import json_copy

JSON = dict[str, Any]

PATCH_MERGE = "application/merge-patch+json"
PATCH_JSON = "application/json-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, PATCH_APPLY)

# Retries of read-modify-write (PATCH, scale) when another writer wins the CAS race in between.
_MAX_CAS_RETRIES = 16

SERVICE_CIDR = ipaddress.ip_network("127.96.0.0/12")
NODE_PORT_RANGE = range(30000, 32768)


@dataclass(frozen=True, slots=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    field_manager: str = ""
    force: bool = False


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    propagation_policy: str = "Background"
    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


@dataclass(slots=True)
class WriteResult:
    obj: JSON
    created: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[JSON]
    resource_version: str
    continue_token: str | None = None
    remaining: int | None = None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    obj: JSON
    raw: bytes | None = None
    """``obj`` as JSON when the store had it encoded (never for a converted version): shared, read-only."""


class ComputedResource(Protocol):
    """A read-only kind whose objects are computed on each request, never stored (``metrics.k8s.io``).

    Registered with :meth:`ResourceAPI.serve_computed`; its get/list replace the store's, every write and
    watch of the kind is 405 MethodNotAllowed.
    """

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> JSON: ...

    async def list(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> builtins.list[JSON]: ...


def parse_selectors(
    rt: ResourceType, label_selector: str | None, field_selector: str | None
) -> tuple[LabelSelector, FieldSelector]:
    allowed = {"metadata.name", "metadata.namespace", *rt.field_selectors}
    try:
        return parse_label_selector(label_selector), parse_field_selector(field_selector, allowed)
    except SelectorError as exc:
        raise st.bad_request(
            f"unable to parse requirement: {exc}"
            if "label" in str(exc).lower() and field_selector is None
            else str(exc)
        ) from exc


def _matches(obj: JSON, labels: LabelSelector, fields: FieldSelector) -> bool:
    meta = obj.get("metadata") or {}
    if not labels.matches(meta.get("labels")):
        return False
    if fields.requirements:
        return fields.matches(lambda path: field_value(obj, path))
    return True


TRIGGER_FIELDS = ("spec.nodeName", "metadata.name")
"""Field selectors the store routes watch events by (an ``=`` term on one of these): each agent watches its
own pods by ``spec.nodeName``, ``kubectl get pod X --watch`` one pod by ``metadata.name``."""


def _trigger(fields: FieldSelector) -> Trigger | None:
    for name in TRIGGER_FIELDS:
        value = fields.exact(name)
        if value is not None:
            return Trigger(name, value, functools.partial(field_value, path=name))
    return None


def _rv(obj: JSON) -> int:
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)


def _encode_continue(rv: str, last_key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": rv, "start": last_key})).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise st.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ) from exc


class ResourceAPI:
    """Validated, versioned object operations over a :class:`Store`."""

    def __init__(self, store: Store, clock: Clock | None = None, ids: IdSource | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.ids: IdSource = ids or RandomIds()
        self._alloc_lock = asyncio.Lock()
        self._computed: dict[tuple[str, str, str], ComputedResource] = {}

    def serve_computed(self, rt: ResourceType, provider: ComputedResource) -> None:
        self._computed[(rt.group, rt.version, rt.plural)] = provider

    def _computed_for(self, rt: ResourceType) -> ComputedResource | None:
        return self._computed.get((rt.group, rt.version, rt.plural)) if self._computed else None

    def _refuse_computed(self, rt: ResourceType) -> None:
        if self._computed_for(rt) is not None:
            raise st.method_not_allowed()

    # ------------------------------------------------------------------ reads

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> JSON:
        if (computed := self._computed_for(rt)) is not None:
            return await computed.get(rt, namespace, name)
        try:
            obj = await self.store.get(rt.key(namespace, name))
        except NotFound as exc:
            raise st.not_found(rt, name) from exc
        return from_storage(rt.api_version, rt.kind, obj)

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
    ) -> ListResult:
        labels, fields = parse_selectors(rt, label_selector, field_selector)
        if (computed := self._computed_for(rt)) is not None:
            return ListResult(await computed.list(rt, namespace, labels, fields), str(self.store.revision))
        start = ""
        token_rv = None
        if continue_token:
            token_rv, start = _decode_continue(continue_token)
        prefix = rt.list_prefix(namespace)
        # metadata.name / metadata.namespace equality narrows to one key or one namespace.
        exact_ns = fields.exact("metadata.namespace")
        if namespace is None and exact_ns is not None and rt.namespaced:
            prefix = rt.list_prefix(exact_ns)
        exact_name = fields.exact("metadata.name")
        if exact_name is not None and (namespace or not rt.namespaced):
            try:
                one = [await self.store.get(rt.key(namespace, exact_name))]
            except NotFound:
                one = []
            result_items = one
            revision = self.store.revision
        else:
            listed = await self.store.list(prefix)
            result_items, revision = listed.items, listed.revision
        items: builtins.list[JSON] = []
        next_token = None
        remaining = 0
        # The common case (no selector, no paging, no conversion) is the stored list itself: this loop
        # is the hot path of a 10k-object LIST, so it does only the work a request needs.
        filtering = bool(labels.requirements or fields.requirements)
        converting = needs_conversion(rt.api_version, rt.kind)
        if not start and not filtering and not limit and not converting:
            items = list(result_items)
        else:
            for obj in result_items:
                if start:
                    meta = obj.get("metadata") or {}
                    if rt.key(meta.get("namespace"), meta.get("name", "")) <= start:
                        continue
                if filtering and not _matches(obj, labels, fields):
                    continue
                if limit and len(items) >= limit:
                    remaining += 1
                    continue
                items.append(from_storage(rt.api_version, rt.kind, obj) if converting else obj)
        rv = token_rv or str(revision)
        if remaining and items:
            last = items[-1]["metadata"]
            next_token = _encode_continue(rv, rt.key(last.get("namespace"), last["name"]))
        return ListResult(items, rv, next_token, remaining if next_token else None)

    # ------------------------------------------------------------------ decode checks

    def _decode(
        self,
        rt: ResourceType,
        body: Any,
        opts: WriteOptions,
        *,
        check_type: bool = True,
        subresource: str | None = None,
    ) -> tuple[JSON, builtins.list[str]]:
        """Checks every incoming object gets: shape, kind/apiVersion, unknown fields, structural schema."""
        if not isinstance(body, dict):
            raise st.bad_request(
                f"the body of the request was not a valid {rt.kind} object: expected a JSON "
                f"object, got {type(body).__name__}"
            )
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if check_type:
            if kind not in (None, "", rt.kind):
                raise st.bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                    f"kind in the data ({kind}) does not match the expected kind ({rt.kind})"
                )
            if api_version not in (None, "", rt.api_version):
                raise st.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected "
                    f"API version ({rt.api_version})"
                )
        warnings: builtins.list[str] = []
        if opts.field_validation not in ("Strict", "Warn", "Ignore", ""):
            raise st.bad_request(
                f"fieldValidation {opts.field_validation!r} is invalid: must be one of Ignore, Warn or Strict"
            )
        # prune_unknown returns a fresh copy, so the caller's body is never changed.
        obj, unknown = schema.prune_unknown(rt.definition, body)
        if unknown:
            if opts.field_validation == "Strict":
                detail = ", ".join(f'unknown field "{p}"' for p in unknown)
                raise st.bad_request(f"strict decoding error: {detail}")
            if opts.field_validation in ("Warn", ""):
                warnings += [f'unknown field "{p}"' for p in unknown]
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        violations = schema.validate(rt.definition, obj, strict=False)
        if violations:
            detail = "; ".join(f"{v.path or '<root>'}: {v.message}" for v in violations[:5])
            raise st.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {detail}'
            )
        return obj, warnings

    async def _check_namespace(self, rt: ResourceType, namespace: str | None, creating: bool) -> None:
        if not rt.namespaced:
            return
        if not namespace:
            raise st.bad_request("the server could not find the requested resource: namespace is required")
        ns_rt = REGISTRY.by_path("", "v1", "namespaces")
        assert ns_rt is not None
        try:
            ns = await self.store.get(ns_rt.key(None, namespace))
        except NotFound as exc:
            raise st.namespace_not_found(namespace) from exc
        if creating and (ns.get("metadata") or {}).get("deletionTimestamp"):
            raise st.ApiError(
                403,
                "Forbidden",
                f'{rt.group_resource} "" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
                "",
                rt.group,
                rt.plural,
            )

    def _invalid(self, rt: ResourceType, obj: JSON, errors: builtins.list[st.FieldError]) -> st.ApiError:
        name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName", "")
        return st.invalid(rt.kind, rt.group, str(name), errors)

    # ------------------------------------------------------------------ create

    async def create(
        self, rt: ResourceType, namespace: str | None, body: Any, opts: WriteOptions = WriteOptions()
    ) -> WriteResult:
        self._refuse_computed(rt)
        obj, warnings = self._decode(rt, body, opts)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise st.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise st.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise st.bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{self.ids.suffix()}"[:253]
        stored_obj = to_storage(rt.api_version, rt.kind, obj)
        prepare_for_create(rt, stored_obj, self.clock.now(), self.ids.uid())
        apply_defaults(stored_obj)
        errors = validate_object(rt.kind, stored_obj, rt.namespaced)
        if errors:
            raise self._invalid(rt, stored_obj, errors)
        await self._check_namespace(rt, namespace, creating=True)
        name = stored_obj["metadata"]["name"]
        key = rt.key(namespace, name)
        if opts.dry_run:
            try:
                await self.store.get(key)
            except NotFound:
                if rt.kind == "Service":
                    await self._allocate_service(stored_obj, None, dry_run=True)
                return WriteResult(from_storage(rt.api_version, rt.kind, stored_obj), True, warnings)
            raise st.already_exists(rt, name)
        if rt.kind == "Service":
            async with self._alloc_lock:
                await self._allocate_service(stored_obj, None, dry_run=False)
                created = await self._store_create(rt, key, stored_obj)
        else:
            created = await self._store_create(rt, key, stored_obj)
        await self._after_create(rt, created)
        return WriteResult(from_storage(rt.api_version, rt.kind, created), True, warnings)

    async def _store_create(self, rt: ResourceType, key: str, obj: JSON) -> JSON:
        try:
            return await self.store.create(key, obj)
        except AlreadyExists as exc:
            raise st.already_exists(rt, obj["metadata"]["name"]) from exc

    async def _after_create(self, rt: ResourceType, obj: JSON) -> None:
        if rt.kind == "Namespace":
            await self.ensure_default_service_account(obj["metadata"]["name"])

    async def ensure_default_service_account(self, namespace: str) -> None:
        sa_rt = REGISTRY.by_path("", "v1", "serviceaccounts")
        assert sa_rt is not None
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
        try:
            await self.create(sa_rt, namespace, sa)
        except st.ApiError as exc:
            if exc.code != 409:
                raise

    # ------------------------------------------------------------------ service address allocation

    async def _allocate_service(self, obj: JSON, old: JSON | None, dry_run: bool) -> None:
        """Give a Service its ClusterIP (loopback range) and node ports; the caller holds the lock."""
        spec = obj.get("spec") or {}
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        svc_rt = REGISTRY.by_path("", "v1", "services")
        assert svc_rt is not None
        listed = await self.store.list(svc_rt.storage_prefix())
        me = (obj["metadata"].get("namespace"), obj["metadata"].get("name"))
        used_ips: set[str] = set()
        used_ports: set[int] = set()
        for other in listed.items:
            ometa = other.get("metadata") or {}
            if (ometa.get("namespace"), ometa.get("name")) == me:
                continue
            ospec = other.get("spec") or {}
            if ospec.get("clusterIP"):
                used_ips.add(str(ospec["clusterIP"]))
            for port in ospec.get("ports") or []:
                if port.get("nodePort"):
                    used_ports.add(int(port["nodePort"]))
        wanted = spec.get("clusterIP")
        if old is not None and (old.get("spec") or {}).get("clusterIP") and not wanted:
            wanted = old["spec"]["clusterIP"]
        if wanted == "None":
            spec["clusterIPs"] = ["None"]
        elif wanted:
            try:
                address = ipaddress.ip_address(wanted)
            except ValueError as exc:
                raise st.invalid(
                    "Service",
                    "",
                    me[1] or "",
                    [
                        st.FieldError(
                            "spec.clusterIP",
                            "Invalid",
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                            wanted,
                        )
                    ],
                ) from exc
            if address not in SERVICE_CIDR:
                raise st.invalid(
                    "Service",
                    "",
                    me[1] or "",
                    [
                        st.FieldError(
                            "spec.clusterIPs",
                            "Invalid",
                            f"failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the valid "
                            "range. "
                            f"The range of valid IPs is {SERVICE_CIDR}",
                            [wanted],
                        )
                    ],
                )
            if wanted in used_ips:
                raise st.invalid(
                    "Service",
                    "",
                    me[1] or "",
                    [
                        st.FieldError(
                            "spec.clusterIPs",
                            "Invalid",
                            f"failed to allocate IP {wanted}: provided IP is already allocated",
                            [wanted],
                        )
                    ],
                )
            spec["clusterIPs"] = [wanted]
        else:
            def free_ip(index: int) -> bool:
                ip = str(SERVICE_CIDR[index])
                return ip not in used_ips and ip.rsplit(".", 1)[1] not in ("0", "255")

            index = _random_free(SERVICE_CIDR.num_addresses, free_ip)
            if index is not None:
                spec["clusterIP"] = str(SERVICE_CIDR[index])
                spec["clusterIPs"] = [spec["clusterIP"]]
            else:
                raise st.ApiError(
                    500,
                    "InternalError",
                    "Internal error occurred: failed to allocate a serviceIP: range is full",
                )
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {
                (p.get("port"), p.get("protocol")): p.get("nodePort")
                for p in ((old or {}).get("spec") or {}).get("ports") or []
            }
            for i, port in enumerate(spec.get("ports") or []):
                if port.get("nodePort"):
                    if int(port["nodePort"]) in used_ports:
                        raise st.invalid(
                            "Service",
                            "",
                            me[1] or "",
                            [
                                st.FieldError(
                                    f"spec.ports[{i}].nodePort",
                                    "Invalid",
                                    "provided port is already allocated",
                                    port["nodePort"],
                                )
                            ],
                        )
                    used_ports.add(int(port["nodePort"]))
                    continue
                previous = old_ports.get((port.get("port"), port.get("protocol")))
                if previous:
                    candidate: int | None = previous
                else:
                    offset = _random_free(
                        len(NODE_PORT_RANGE), lambda i: NODE_PORT_RANGE[i] not in used_ports
                    )
                    candidate = None if offset is None else NODE_PORT_RANGE[offset]
                if candidate is None:
                    raise st.internal("failed to allocate a nodePort: range is full")
                port["nodePort"] = candidate
                used_ports.add(candidate)
        else:
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)

    # ------------------------------------------------------------------ update

    async def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        opts: WriteOptions = WriteOptions(),
        subresource: str | None = None,
    ) -> WriteResult:
        self._refuse_computed(rt)
        obj, warnings = self._decode(rt, body, opts)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise st.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise st.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = namespace
        expected = meta.get("resourceVersion")
        try:
            current = await self.store.get(rt.key(namespace, name))
        except NotFound as exc:
            # PUT creates when the object does not exist, as upstream does for most kinds.
            if subresource is None and not expected:
                return await self.create(rt, namespace, _without_rv(body), opts)
            raise st.not_found(rt, name) from exc
        if expected:
            try:
                if int(expected) != _rv(current):
                    raise st.conflict(rt, name)
            except ValueError as exc:
                raise st.bad_request(f"invalid resourceVersion {expected!r}") from exc
        result = await self._write_update(
            rt, namespace, name, obj, current, opts, subresource, expected_rv=_rv(current)
        )
        result.warnings[:0] = warnings
        return result

    async def _write_update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        obj: JSON,
        current: JSON,
        opts: WriteOptions,
        subresource: str | None,
        expected_rv: int,
    ) -> WriteResult:
        """Strategy, defaults, validation and the CAS write of a new version of ``current``."""
        new = to_storage(rt.api_version, rt.kind, obj, current)
        new = prepare_for_update(rt, new, current, subresource)
        new["metadata"]["resourceVersion"] = str(expected_rv)
        apply_defaults(new)
        errors = validate_object(rt.kind, new, rt.namespaced) + validate_update(rt.kind, new, current)
        if errors:
            raise self._invalid(rt, new, errors)
        if rt.kind == "Service" and subresource is None:
            async with self._alloc_lock:
                await self._allocate_service(new, current, dry_run=opts.dry_run)
                return await self._commit_update(rt, namespace, name, new, current, opts, expected_rv)
        return await self._commit_update(rt, namespace, name, new, current, opts, expected_rv)

    async def _commit_update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        new: JSON,
        current: JSON,
        opts: WriteOptions,
        expected_rv: int,
    ) -> WriteResult:
        key = rt.key(namespace, name)
        if _same_content(new, current):
            # A no-op write does not take a revision, as upstream skips unchanged updates.
            return WriteResult(from_storage(rt.api_version, rt.kind, current))
        if opts.dry_run:
            return WriteResult(from_storage(rt.api_version, rt.kind, new))
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer went away from an object being deleted: finish the deletion.
            try:
                gone = await self.store.delete(key, expected_rv)
            except Conflict as exc:
                raise st.conflict(rt, name) from exc
            except NotFound as exc:
                raise st.not_found(rt, name) from exc
            await self._after_delete(rt, gone)
            return WriteResult(from_storage(rt.api_version, rt.kind, gone))
        try:
            stored = await self.store.update(key, new, expected_rv)
        except Conflict as exc:
            raise st.conflict(rt, name) from exc
        except NotFound as exc:
            raise st.not_found(rt, name) from exc
        return WriteResult(from_storage(rt.api_version, rt.kind, stored))

    # ------------------------------------------------------------------ patch

    async def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions = WriteOptions(),
        subresource: str | None = None,
    ) -> WriteResult:
        self._refuse_computed(rt)
        if patch_type not in PATCH_TYPES:
            raise st.unsupported_media_type(patch_type, list(PATCH_TYPES))
        for _ in range(_MAX_CAS_RETRIES):
            try:
                current_stored = await self.store.get(rt.key(namespace, name))
            except NotFound as exc:
                if patch_type == PATCH_APPLY and subresource is None:
                    return await self._apply_create(rt, namespace, name, body, opts)
                raise st.not_found(rt, name) from exc
            current = from_storage(rt.api_version, rt.kind, current_stored)
            patched = self._apply_patch_body(rt, current, patch_type, body)
            if not isinstance(patched, dict):
                raise st.bad_request("the patched object is not a JSON object")
            pmeta = patched.get("metadata")
            if isinstance(pmeta, dict):
                if pmeta.get("name") not in (None, name):
                    raise st.bad_request(
                        f"the name of the object ({pmeta.get('name')}) does not match the name "
                        f"on the URL ({name})"
                    )
                # A patch may pin a resourceVersion (optimistic concurrency); else it applies to the latest.
                patch_rv = _patch_resource_version(body) if patch_type != PATCH_JSON else None
                if patch_rv and patch_rv != str(_rv(current_stored)):
                    raise st.conflict(rt, name)
            obj, warnings = self._decode(rt, patched, opts)
            obj.setdefault("metadata", {})["name"] = name
            try:
                result = await self._write_update(
                    rt,
                    namespace,
                    name,
                    obj,
                    current_stored,
                    opts,
                    subresource,
                    expected_rv=_rv(current_stored),
                )
            except st.ApiError as exc:
                if exc.reason == "Conflict" and not _patch_resource_version(body):
                    continue
                raise
            result.warnings[:0] = warnings
            return result
        raise st.conflict(rt, name, "too many concurrent writers; retry")

    def _apply_patch_body(self, rt: ResourceType, current: JSON, patch_type: str, body: Any) -> Any:
        try:
            if patch_type == PATCH_JSON:
                if not isinstance(body, list):
                    raise st.bad_request("json patch must be a JSON array of operations")
                return apply_json_patch(current, body)
            if not isinstance(body, dict):
                raise st.bad_request(f"the patch must be a JSON object for {patch_type}")
            if patch_type == PATCH_MERGE:
                return apply_merge_patch(current, body)
            node = schema.schema_index().node(rt.definition)
            if patch_type == PATCH_STRATEGIC:
                return apply_strategic_merge_patch(current, body, node)
            self._check_apply_body(rt, body)
            return apply_patch(current, body, node)
        except PatchError as exc:
            code = 422 if patch_type == PATCH_JSON else 400
            reason = "Invalid" if code == 422 else "BadRequest"
            raise st.ApiError(code, reason, str(exc)) from exc

    def _check_apply_body(self, rt: ResourceType, body: JSON) -> None:
        if body.get("apiVersion") != rt.api_version or body.get("kind") != rt.kind:
            raise st.bad_request(
                f"apply patches must specify apiVersion {rt.api_version!r} and kind "
                f"{rt.kind!r} (got {body.get('apiVersion')!r}, {body.get('kind')!r})"
            )

    async def _apply_create(
        self, rt: ResourceType, namespace: str | None, name: str, body: Any, opts: WriteOptions
    ) -> WriteResult:
        if not isinstance(body, dict):
            raise st.bad_request("apply patch must be a JSON or YAML object")
        self._check_apply_body(rt, body)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise st.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})["name"] = name
        return await self.create(rt, namespace, obj, opts)

    # ------------------------------------------------------------------ scale subresource

    async def get_scale(self, rt: ResourceType, namespace: str | None, name: str) -> JSON:
        return _to_scale(await self.get(rt, namespace, name))

    async def update_scale(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[JSON], Any],
        opts: WriteOptions = WriteOptions(),
    ) -> JSON:
        """Read-modify-write of ``spec.replicas`` through a Scale object; ``change`` maps old Scale to new."""
        for _ in range(_MAX_CAS_RETRIES):
            current = await self.get(rt, namespace, name)
            scale = _to_scale(current)
            wanted = change(scale)
            if not isinstance(wanted, dict):
                raise st.bad_request("the body of a scale update must be a Scale object")
            wmeta = wanted.get("metadata") or {}
            if (
                wmeta.get("resourceVersion")
                and wmeta["resourceVersion"] != current["metadata"]["resourceVersion"]
            ):
                raise st.conflict(REGISTRY.by_path(rt.group, rt.version, rt.plural) or rt, name)
            replicas = (wanted.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise st.invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    [
                        st.FieldError(
                            "spec.replicas", "Invalid", "must be greater than or equal to 0", replicas
                        )
                    ],
                )
            updated = json_copy(current)
            updated["spec"]["replicas"] = replicas
            try:
                result = await self._write_update(
                    rt,
                    namespace,
                    name,
                    updated,
                    await self.store.get(rt.key(namespace, name)),
                    opts,
                    None,
                    expected_rv=_rv(current),
                )
            except st.ApiError as exc:
                if exc.reason == "Conflict" and not wmeta.get("resourceVersion"):
                    continue
                raise
            return _to_scale(result.obj)
        raise st.conflict(rt, name, "too many concurrent writers; retry")

    # ------------------------------------------------------------------ binding subresource (scheduler)
    # pods/binding, as upstream's BindingREST.assignPod: a CAS read-modify-write of the stored pod that sets
    # spec.nodeName and the PodScheduled condition in one revision. Strategy is skipped on purpose (a main
    # resource write may not touch status); validation and the store CAS are the same as for any update.

    async def bind(
        self,
        namespace: str,
        name: str,
        node_name: str,
        expected_uid: str | None = None,
        opts: WriteOptions = WriteOptions(),
    ) -> JSON:
        """Assign pod ``namespace/name`` to ``node_name``; returns the bound pod.

        409 Conflict when the pod already has a node, is being deleted, or its uid is not ``expected_uid``.
        """
        from corral.util.clock import rfc3339

        rt = REGISTRY.by_path("", "v1", "pods")
        assert rt is not None
        if not node_name:
            raise st.invalid("Binding", "", name, [st.FieldError("target.name", "Required", "")])
        key = rt.key(namespace, name)
        for _ in range(_MAX_CAS_RETRIES):
            try:
                current = await self.store.get(key)
            except NotFound as exc:
                raise st.not_found(rt, name) from exc
            meta = current.get("metadata") or {}
            if expected_uid and meta.get("uid") != expected_uid:
                raise st.conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {expected_uid}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if meta.get("deletionTimestamp"):
                raise st.conflict(rt, name, f"pod {name} is being deleted, cannot be assigned to a host")
            assigned = (current.get("spec") or {}).get("nodeName")
            if assigned:
                raise st.conflict(rt, name, f'pod {name} is already assigned to node "{assigned}"')
            new = json_copy(current)
            new.setdefault("spec", {})["nodeName"] = node_name
            status = new.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            previous = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
            since = rfc3339(self.clock.now())
            if previous and previous[0].get("status") == "True" and previous[0].get("lastTransitionTime"):
                since = previous[0]["lastTransitionTime"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": since})
            status["conditions"] = conditions
            new["metadata"]["resourceVersion"] = str(_rv(current))
            errors = validate_object(rt.kind, new, rt.namespaced) + validate_update(rt.kind, new, current)
            if errors:
                raise self._invalid(rt, new, errors)
            try:
                result = await self._commit_update(rt, namespace, name, new, current, opts, _rv(current))
            except st.ApiError as exc:
                if exc.reason == "Conflict":
                    continue  # someone else wrote the pod in between: read again and re-check
                raise
            return result.obj
        raise st.conflict(rt, name, "too many concurrent writers; retry")

    # ------------------------------------------------------------------ delete

    async def delete(
        self, rt: ResourceType, namespace: str | None, name: str, opts: DeleteOptions = DeleteOptions()
    ) -> tuple[JSON, bool]:
        """Delete or start deleting. Returns (object, finished): finished False means finalizers remain."""
        self._refuse_computed(rt)
        if opts.propagation_policy not in ("Background", "Foreground", "Orphan", ""):
            raise st.invalid(
                "DeleteOptions",
                "",
                "",
                [
                    st.FieldError(
                        "propagationPolicy",
                        "NotSupported",
                        'supported values: "Foreground", "Background", "Orphan", nil',
                        opts.propagation_policy,
                    )
                ],
            )
        key = rt.key(namespace, name)
        for _ in range(_MAX_CAS_RETRIES):
            try:
                current = await self.store.get(key)
            except NotFound as exc:
                raise st.not_found(rt, name) from exc
            meta = current.get("metadata") or {}
            if opts.precondition_uid and opts.precondition_uid != meta.get("uid"):
                raise st.conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if opts.precondition_rv and opts.precondition_rv != meta.get("resourceVersion"):
                raise st.conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{opts.precondition_rv}, ResourceVersion in object meta: "
                    f"{meta.get('resourceVersion')}",
                )
            if opts.dry_run:
                return from_storage(rt.api_version, rt.kind, current), True
            grace = _pod_grace(rt, current, opts)
            # --- GC cascade (controllers/gc.py): Foreground / Orphan leave the object in place, marked
            # deleting, with a finalizer the garbage collector removes once dependents are deleted / orphaned.
            cascade = _cascade_finalizers(meta.get("finalizers"), opts.propagation_policy)
            if cascade is not None and rt.kind != "Namespace" and not meta.get("deletionGracePeriodSeconds"):
                marked = mark_deleting(current, self.clock.now(), grace)
                marked["metadata"]["finalizers"] = cascade
                try:
                    stored = await self.store.update(key, marked, _rv(current))
                except Conflict:
                    continue
                return from_storage(rt.api_version, rt.kind, stored), False
            # --- end GC cascade
            if meta.get("deletionTimestamp"):
                # Already terminating: only a zero grace period (the agent confirming the processes are
                # gone, or --force) finishes it, and only once no finalizer remains.
                if grace != 0 or meta.get("finalizers"):
                    return from_storage(rt.api_version, rt.kind, current), False
            elif rt.kind == "Namespace":
                return await self._delete_namespace(rt, current), False
            elif meta.get("finalizers") or grace:
                # Graceful pod deletion: the node agent stops the processes, then deletes with grace 0.
                marked = mark_deleting(current, self.clock.now(), grace or 0)
                try:
                    stored = await self.store.update(key, marked, _rv(current))
                except Conflict:
                    continue
                return from_storage(rt.api_version, rt.kind, stored), False
            try:
                gone = await self.store.delete(key, _rv(current))
            except Conflict:
                continue
            except NotFound as exc:
                raise st.not_found(rt, name) from exc
            await self._after_delete(rt, gone)
            return from_storage(rt.api_version, rt.kind, gone), True
        raise st.conflict(rt, name, "too many concurrent writers; retry")

    async def _after_delete(self, rt: ResourceType, obj: JSON) -> None:
        if rt.namespaced:
            await self._maybe_finish_namespace((obj.get("metadata") or {}).get("namespace"))

    async def _delete_namespace(self, rt: ResourceType, ns: JSON) -> JSON:
        """Mark the namespace Terminating, delete what it holds, and remove it once it is empty."""
        name = ns["metadata"]["name"]
        marked = mark_deleting(ns, self.clock.now(), 0)
        try:
            stored = await self.store.update(rt.key(None, name), marked, _rv(ns))
        except Conflict as exc:
            raise st.conflict(rt, name) from exc
        for other in REGISTRY.preferred():
            if not other.namespaced:
                continue
            listed = await self.store.list(other.list_prefix(name))
            for obj in listed.items:
                try:
                    await self.delete(other, name, obj["metadata"]["name"])
                except st.ApiError as exc:
                    if exc.code != 404:
                        raise
        finished = await self._maybe_finish_namespace(name)
        return finished or stored

    async def _maybe_finish_namespace(self, namespace: str | None) -> JSON | None:
        if not namespace:
            return None
        ns_rt = REGISTRY.by_path("", "v1", "namespaces")
        assert ns_rt is not None
        try:
            ns = await self.store.get(ns_rt.key(None, namespace))
        except NotFound:
            return None
        if not (ns.get("metadata") or {}).get("deletionTimestamp"):
            return None
        for other in REGISTRY.preferred():
            if other.namespaced and (await self.store.list(other.list_prefix(namespace))).items:
                return None
        try:
            return await self.store.delete(ns_rt.key(None, namespace), _rv(ns))
        except (Conflict, NotFound):
            return None

    async def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None,
        field_selector: str | None,
        opts: DeleteOptions = DeleteOptions(),
    ) -> builtins.list[JSON]:
        self._refuse_computed(rt)
        listed = await self.list(rt, namespace, label_selector=label_selector, field_selector=field_selector)
        deleted: builtins.list[JSON] = []
        for obj in listed.items:
            meta = obj["metadata"]
            try:
                gone, _ = await self.delete(rt, meta.get("namespace"), meta["name"], opts)
            except st.ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            deleted.append(gone)
        return deleted

    # ------------------------------------------------------------------ watch

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        resource_version: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        send_initial: bool | None = None,
        deadline: float | None = None,
        idle_interval: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events as Kubernetes watch semantics define them. The iteration ends at ``deadline`` (event loop
        time) when one is given; otherwise the caller bounds the duration. With ``idle_interval``, every that
        many seconds a ``BOOKMARK`` event with an empty object is yielded if no event was waiting (the HTTP
        handler turns it into a bookmark at the store's current revision)."""
        self._refuse_computed(rt)
        labels, fields = parse_selectors(rt, label_selector, field_selector)
        initial: builtins.list[JSON] = []
        if not resource_version or resource_version == "0":
            listed = await self.list(
                rt, namespace, label_selector=label_selector, field_selector=field_selector
            )
            initial = listed.items
            since = int(listed.resource_version)
        else:
            try:
                since = int(resource_version)
            except ValueError as exc:
                raise st.bad_request(f"invalid resourceVersion {resource_version!r}") from exc
        try:
            subscription = self.store.watch(rt.list_prefix(namespace), since, _trigger(fields))
        except Expired as exc:
            raise st.expired(f"too old resource version: {exc.requested} ({exc.oldest})") from exc
        return self._stream(rt, subscription, initial, labels, fields, deadline, idle_interval)

    async def _stream(
        self,
        rt: ResourceType,
        subscription: Any,
        initial: builtins.list[JSON],
        labels: LabelSelector,
        fields: FieldSelector,
        deadline: float | None,
        idle_interval: float | None,
    ) -> AsyncIterator[WatchEvent]:
        # Timers, not a timeout scope or a task around every event: one closes the subscription at the
        # deadline (ending the iteration; events still buffered are dropped, and a watcher resumes from the
        # last resourceVersion it saw), one ticks it every ``idle_interval``.
        loop = asyncio.get_running_loop()
        timer = None if deadline is None else loop.call_at(deadline, subscription.close)
        ticker: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal ticker
            subscription.tick()
            assert idle_interval is not None
            ticker = loop.call_later(idle_interval, tick)

        if idle_interval is not None:
            ticker = loop.call_later(idle_interval, tick)
        try:
            for obj in initial:
                yield WatchEvent("ADDED", obj)
            while True:
                try:
                    event = await subscription.next_or_tick()
                except StopAsyncIteration:
                    return
                if event is None:
                    yield WatchEvent("BOOKMARK", {})
                    continue
                translated = self._filter_event(rt, event, labels, fields)
                if translated is not None:
                    yield translated
        finally:
            for handle in (timer, ticker):
                if handle is not None:
                    handle.cancel()
            subscription.close()

    def _filter_event(
        self, rt: ResourceType, event: Event, labels: LabelSelector, fields: FieldSelector
    ) -> WatchEvent | None:
        if not labels.requirements and not fields.requirements:
            return self._served_event(rt, event.type.value, event)
        now_match = _matches(event.obj, labels, fields)
        prev_match = event.prev is not None and _matches(event.prev, labels, fields)
        if event.type is EventType.DELETED:
            kind = "DELETED" if (prev_match or now_match) else None
        elif event.type is EventType.ADDED:
            kind = "ADDED" if now_match else None
        elif now_match and prev_match:
            kind = "MODIFIED"
        elif now_match:
            kind = "ADDED"
        elif prev_match:
            kind = "DELETED"
        else:
            kind = None
        if kind is None:
            return None
        return self._served_event(rt, kind, event)

    @staticmethod
    def _served_event(rt: ResourceType, kind: str, event: Event) -> WatchEvent:
        if needs_conversion(rt.api_version, rt.kind):
            return WatchEvent(kind, from_storage(rt.api_version, rt.kind, event.obj))
        return WatchEvent(kind, event.obj, event.raw)


def _without_rv(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        out = dict(body)
        out["metadata"] = {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}
        return out
    return body


def _patch_resource_version(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        rv = body["metadata"].get("resourceVersion")
        return str(rv) if rv else None
    return None


def _same_content(new: JSON, current: JSON) -> bool:
    a = {k: v for k, v in new.items() if k != "metadata"}
    b = {k: v for k, v in current.items() if k != "metadata"}
    if a != b:
        return False
    ma = {k: v for k, v in (new.get("metadata") or {}).items() if k != "resourceVersion"}
    mb = {k: v for k, v in (current.get("metadata") or {}).items() if k != "resourceVersion"}
    return ma == mb


def _to_scale(obj: JSON) -> JSON:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": format_selector_object(spec.get("selector")).replace("<none>", ""),
        },
    }


def _cascade_finalizers(finalizers: Any, policy: str) -> builtins.list[str] | None:
    """The finalizers a Foreground/Orphan DELETE asks for (``deletionFinalizersForGarbageCollection``
    upstream), or None when nothing changes. Background keeps existing GC finalizers: our transports always
    send an explicit policy (the agent's final grace-0 delete too), so stripping them would cut a cascade
    short."""
    wanted = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy)
    if wanted is None:
        return None
    current = [str(f) for f in (finalizers or [])]
    out = [f for f in current if f not in ("foregroundDeletion", "orphan")] + [wanted]
    return None if sorted(out) == sorted(current) else out


def _pod_grace(rt: ResourceType, obj: JSON, opts: DeleteOptions) -> int:
    """Seconds of graceful termination a DELETE asks for; 0 means delete now.

    Only pods bound to a node terminate gracefully (their agent must stop processes first); an unscheduled
    pod has nothing running and goes at once, as upstream.
    """
    if rt.kind != "Pod" or not (obj.get("spec") or {}).get("nodeName"):
        return 0
    if opts.grace_period_seconds is not None:
        return max(0, int(opts.grace_period_seconds))
    return int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30) or 0)


def _random_free(size: int, is_free: Callable[[int], bool]) -> int | None:
    """An index in ``range(size)`` that ``is_free``, probing on from a random start (as upstream's
    allocators do): two clusters on one machine then rarely hand out the same loopback ClusterIP or node
    port, and a freed address is not reused at once."""
    start = _ALLOCATION_RANDOM.randrange(size)
    for step in range(size):
        index = (start + step) % size
        if is_free(index):
            return index
    return None


_ALLOCATION_RANDOM = random.Random()
