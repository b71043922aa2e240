"""Authentication and authorization of API requests: who calls, and may a node or a joining machine do this.

Three kinds of bearer tokens:

- static tokens from ``<data-dir>/tokens`` (one ``token,user`` line each, mode 0600; ``corral up`` creates the
  admin token on first start): such a user may do anything (there is no RBAC);
- join tokens ``<id>.<secret>`` (kubeadm bootstrap tokens, see ``jointokens.py``), looked up in their Secret
  on every request: user ``system:bootstrap:<id>``, allowed only the join exchange; expired or deleted tokens
  get a 401 saying so;
- node tokens ``node:<name>:<secret>`` issued by the join: user ``system:node:<name>``, group
  ``system:nodes``, restricted by ``nodeauth.decide`` (the IO that gathers its inputs is here).

``/healthz``, ``/livez``, ``/readyz``, ``/version`` and a GET of the ``kube-public/cluster-info`` ConfigMap
(the discovery document a joining agent checks against its CA hash) are anonymous. Token comparison is
constant-time.
"""

from __future__ import annotations

import datetime
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import jointokens as jt
from corral.apiserver import nodeauth
from corral.apiserver import status as st
from corral.apiserver.paths import UnknownPath, parse_path

if TYPE_CHECKING:
    from corral.apiserver.rest import ResourceAPI

ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
AUTHENTICATED = "system:authenticated"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
# Non-resource paths a node may GET: discovery, OpenAPI, version and health (upstream's system:discovery).
NODE_READABLE_PREFIXES = ("/api", "/apis", "/openapi/", "/version", "/healthz", "/livez", "/readyz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    groups: tuple[str, ...] = (AUTHENTICATED,)


def _rt(name: str) -> ResourceType:
    rt = REGISTRY.resolve(name)
    assert rt is not None, name
    return rt


def _refuse(err: st.ApiError) -> web.Response:
    return web.Response(body=err.body(), status=err.code, content_type="application/json")


def forbidden(message: str, name: str = "", group: str = "", kind: str = "") -> st.ApiError:
    return st.ApiError(403, "Forbidden", message, name, group, kind)


class TokenAuthenticator:
    def __init__(
        self,
        tokens: dict[str, str],
        api: ResourceAPI | None = None,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._tokens = dict(tokens)
        self._api = api
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))

    def user_for(self, header: str | None) -> str | None:
        """The static-token user of an ``Authorization`` header (join and node tokens: see ``identify``)."""
        presented = _bearer(header)
        if presented is None:
            return None
        for token, user in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                return user
        return None

    async def identify(self, header: str | None) -> Identity | st.ApiError:
        """Who the request is, or the 401 to answer."""
        static = self.user_for(header)
        if static is not None:
            return Identity(static)
        presented = _bearer(header)
        if presented is None or self._api is None:
            return st.unauthorized()
        match = jt.TOKEN_RE.match(presented)
        if match is not None:
            token_id = match.group(1)
            secret = await self._secret(jt.BOOTSTRAP_SECRET_PREFIX + token_id)
            check = jt.check_token(presented, secret, self._now())
            if check is jt.TokenCheck.OK:
                return Identity(
                    BOOTSTRAP_USER_PREFIX + token_id,
                    (jt.BOOTSTRAP_GROUP, jt.BOOTSTRAP_EXTRA_GROUP, AUTHENTICATED),
                )
            if check is jt.TokenCheck.EXPIRED:
                return st.ApiError(401, "Unauthorized", f'Unauthorized: join token "{token_id}" has expired')
            return st.ApiError(
                401, "Unauthorized", f'Unauthorized: join token "{token_id}" is unknown, deleted or wrong'
            )
        parsed = jt.parse_node_token(presented)
        if parsed is not None:
            secret = await self._secret(jt.NODE_TOKEN_SECRET_PREFIX + parsed[0])
            node = jt.check_node_token(presented, secret)
            if node is not None:
                return Identity(jt.node_user(node), (jt.NODES_GROUP, AUTHENTICATED))
        return st.unauthorized()

    async def _secret(self, name: str) -> dict[str, Any] | None:
        assert self._api is not None
        try:
            return await self._api.get(_rt("secrets"), jt.SYSTEM_NAMESPACE, name)
        except st.ApiError:
            return None

    async def authorize(self, request: web.Request, identity: Identity) -> st.ApiError | None:
        """None when ``identity`` may make this request; else the 403 to answer."""
        if identity.user.startswith(BOOTSTRAP_USER_PREFIX):
            if request.path == jt.JOIN_PATH and request.method == "POST":
                return None
            return _forbidden_for(request, identity, "join tokens may only join a node")
        node = jt.node_of_user(identity.user, identity.groups)
        if node is None:
            return None
        return await self._authorize_node(request, identity, node)

    async def _authorize_node(
        self, request: web.Request, identity: Identity, node: str
    ) -> st.ApiError | None:
        try:
            target = parse_path(request.path)
        except UnknownPath:
            if request.method in ("GET", "HEAD") and request.path.startswith(NODE_READABLE_PREFIXES):
                return None
            return _forbidden_for(request, identity, "")
        watch = request.query.get("watch", "").lower() in ("1", "true")
        attrs = nodeauth.Attributes(
            user=identity.user,
            verb=nodeauth.http_verb(request.method, target.name is not None, watch),
            group=target.rt.group,
            resource=target.rt.plural,
            namespace=target.namespace,
            name=target.name,
            subresource=target.subresource,
        )
        need = nodeauth.needs(node, attrs)
        pod: dict[str, Any] | None = None
        node_pods: list[dict[str, Any]] = []
        assert self._api is not None
        if need is nodeauth.Need.POD and target.name is not None:
            try:
                pod = await self._api.get(_rt("pods"), target.namespace, target.name)
            except st.ApiError:
                pod = None
        elif need is nodeauth.Need.NODE_PODS:
            listed = await self._api.list(
                _rt("pods"), target.namespace, field_selector=f"spec.nodeName={node}"
            )
            node_pods = list(listed.items)
        elif need is nodeauth.Need.BODY_NAME:
            # The name is in the body, which the create handler decodes (JSON, YAML or protobuf): it calls
            # this check on the decoded object before writing anything.
            def admit(body: Any) -> st.ApiError | None:
                meta = body.get("metadata") if isinstance(body, dict) else None
                name = meta.get("name") if isinstance(meta, dict) else None
                verdict = nodeauth.decide(node, attrs, body_name=name if isinstance(name, str) else None)
                if verdict.allowed:
                    return None
                return forbidden(
                    nodeauth.forbidden_message(attrs, verdict.reason), "", target.rt.group, target.rt.plural
                )

            request[ADMIT_CREATE] = admit
            return None
        decision = nodeauth.decide(node, attrs, pod=pod, node_pods=node_pods)
        if decision.allowed:
            return None
        return forbidden(
            nodeauth.forbidden_message(attrs, decision.reason),
            target.name or "",
            target.rt.group,
            target.rt.plural,
        )

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if _anonymous(request):
                return await handler(request)
            identity = await self.identify(request.headers.get("Authorization"))
            if isinstance(identity, st.ApiError):
                return _refuse(identity)
            request["user"] = identity.user
            request["groups"] = identity.groups
            refused = await self.authorize(request, identity)
            if refused is not None:
                return _refuse(refused)
            return await handler(request)

        return authenticate


ADMIT_CREATE = "corral.admit_create"
"""Request key: a check the create handler runs on the decoded body (a node creating its own Node/Lease)."""


def _bearer(header: str | None) -> str | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip()


def _anonymous(request: web.Request) -> bool:
    path = request.path
    if path in ANONYMOUS_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
        return True
    # kubeadm's discovery: anyone may read cluster-info, whose CA the joiner checks against its pinned hash.
    return path == jt.CLUSTER_INFO_PATH and request.method == "GET"


def _forbidden_for(request: web.Request, identity: Identity, reason: str) -> st.ApiError:
    verb = request.method.lower()
    try:
        target = parse_path(request.path)
    except UnknownPath:
        message = f'forbidden: User "{identity.user}" cannot {verb} path "{request.path}"'
        return forbidden(f"{message}: {reason}" if reason else message)
    attrs = nodeauth.Attributes(
        user=identity.user,
        verb=nodeauth.http_verb(request.method, target.name is not None, "watch" in request.query),
        group=target.rt.group,
        resource=target.rt.plural,
        namespace=target.namespace,
        name=target.name,
        subresource=target.subresource,
    )
    return forbidden(
        nodeauth.forbidden_message(attrs, reason), target.name or "", target.rt.group, target.rt.plural
    )


def load_or_create_tokens(path: Path) -> dict[str, str]:
    """Read the token file, creating it with a fresh admin token if it does not exist."""
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{token},admin\n")
    tokens: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            token, _, user = line.partition(",")
            tokens[token.strip()] = user.strip() or "admin"
    return tokens


def admin_token(tokens: dict[str, str]) -> str:
    for token, user in tokens.items():
        if user == "admin":
            return token
    raise LookupError("no admin token")
