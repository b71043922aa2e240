"""The server side of joining: publishing ``kube-public/cluster-info`` and the join exchange endpoint.

``POST /corral/v1/join`` with a join token and ``{"nodeName": N}`` answers ``{"nodeName": N, "token": T}``:
a fresh node token for N (``jointokens.py``), whose hash replaces any earlier one. As ``kubeadm join`` does,
it refuses a name whose Node exists and is Ready (a token holder must not take over a live node).

With ``"servingCSR"`` (PEM) and ``"addresses"`` in the request, and a server that has the cluster CA, the
answer also carries ``"servingCertificate"``: the node API's serving certificate for those addresses, signed
by the CA (``nodecerts.py``). The agent keeps the key; only public parts travel.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import jointokens as jt
from corral.apiserver import status as st
from corral.apiserver.nodecerts import CertError, ReservedName
from corral.apiserver.rest import ResourceAPI

NODE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _rt(name: str) -> ResourceType:
    rt = REGISTRY.resolve(name)
    assert rt is not None, name
    return rt


async def _put(api: ResourceAPI, rt: ResourceType, namespace: str, obj: dict[str, Any]) -> None:
    """Create ``obj`` or replace the existing one's content (retrying a lost compare-and-set)."""
    name = obj["metadata"]["name"]
    for _ in range(5):
        try:
            current = await api.get(rt, namespace, name)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
            try:
                await api.create(rt, namespace, obj)
                return
            except st.ApiError as err:
                if err.code != 409:
                    raise
                continue
        replacement = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        }
        try:
            await api.update(rt, namespace, name, replacement)
            return
        except st.ApiError as err:
            if err.code != 409:
                raise
    raise st.conflict(rt, name)


async def publish_cluster_info(api: ResourceAPI, server_url: str, ca_pem: bytes) -> None:
    await _put(api, _rt("configmaps"), jt.CLUSTER_INFO_NAMESPACE, jt.cluster_info(server_url, ca_pem))


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


ServingSigner = Callable[[str, bytes, object], bytes]
"""``(node name, CSR PEM, requested addresses) → certificate PEM``; raises CertError."""


class JoinHandler:
    def __init__(self, api: ResourceAPI, signer: ServingSigner | None = None) -> None:
        self.api = api
        self.signer = signer

    async def __call__(self, request: web.Request) -> web.Response:
        user = str(request.get("user") or "")
        if request.get("user") is not None and not (user == "admin" or user.startswith("system:bootstrap:")):
            raise st.ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot join a node')
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise st.bad_request(f"the join request is not JSON: {exc}") from exc
        name = body.get("nodeName") if isinstance(body, dict) else None
        if not isinstance(name, str) or len(name) > 200 or not NODE_NAME_RE.match(name):
            raise st.bad_request(f"invalid node name {name!r}: it must be a DNS-1123 subdomain")
        try:
            node = await self.api.get(_rt("nodes"), None, name)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
        else:
            if _ready(node):
                raise st.ApiError(
                    409,
                    "AlreadyExists",
                    f'a Node with name "{name}" and status "Ready" already exists in the cluster. You must '
                    "delete the existing Node or change the name of this new joining Node",
                    name,
                    "",
                    "nodes",
                )
        answer: dict[str, Any] = {"nodeName": name}
        csr = body.get("servingCSR")
        if isinstance(csr, str) and self.signer is not None:  # checked before the token is issued
            try:
                answer["servingCertificate"] = self.signer(
                    name, csr.encode(), body.get("addresses", [])
                ).decode()
            except ReservedName:
                pass  # the node joins; its agent runs without a node API and logs why
            except CertError as exc:
                raise st.bad_request(f"cannot issue the node's serving certificate: {exc}") from exc
        token = jt.new_node_token(name)
        await _put(self.api, _rt("secrets"), jt.SYSTEM_NAMESPACE, jt.node_token_secret(token))
        return web.json_response({**answer, "token": token})
