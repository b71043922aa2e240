"""Ingress routing table: hosts and wildcards, Exact/Prefix paths, precedence, default backends, port
resolution, classes, problems, and the status the node glue writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.proxy.ingressroutes import (
    Problem,
    RoutingTable,
    build_routing_table,
    handled_classes,
    ingress_class,
    is_handled,
    load_balancer_ingress,
    normalize_host,
    path_segments,
    prefix_matches,
)

JSON = dict[str, Any]


# -- object builders ---------------------------------------------------------------------------------------


def service(name: str, ports: list[JSON] | None = None, ns: str = "default", **spec: Any) -> JSON:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": ports if ports is not None else [{"name": "http", "port": 80}], **spec},
    }


def endpoint_slice(
    svc: str,
    port: int,
    *,
    port_name: str = "http",
    ns: str = "default",
    ready: bool = True,
    ip: str = "127.0.0.1",
) -> JSON:
    return {
        "metadata": {"name": f"{svc}-{port}", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False}}
        ],
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }


def backend(svc: str, port: int | str = 80) -> JSON:
    ref: JSON = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": svc, "port": ref}}


def path(p: str, svc: str, path_type: str = "Prefix", port: int | str = 80) -> JSON:
    return {"path": p, "pathType": path_type, "backend": backend(svc, port)}


def ingress(
    name: str,
    rules: list[JSON] | None = None,
    *,
    ns: str = "default",
    default: JSON | None = None,
    created: str = "2024-01-01T00:00:00Z",
    cls: str | None = None,
    annotations: dict[str, str] | None = None,
) -> JSON:
    spec: JSON = {"rules": rules or []}
    if default is not None:
        spec["defaultBackend"] = default
    if cls is not None:
        spec["ingressClassName"] = cls
    meta: JSON = {"name": name, "namespace": ns, "creationTimestamp": created}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": spec}


def rule(host: str | None, *paths: JSON) -> JSON:
    r: JSON = {"http": {"paths": list(paths)}}
    if host is not None:
        r["host"] = host
    return r


SERVICES = [service(n) for n in ("a", "b", "c", "d", "e")]
SLICES = [endpoint_slice(n, 20000 + i) for i, n in enumerate(("a", "b", "c", "d", "e"))]


def table(
    *ingresses: JSON, services: list[JSON] | None = None, slices: list[JSON] | None = None
) -> RoutingTable:
    return build_routing_table(
        ingresses, SERVICES if services is None else services, SLICES if slices is None else slices
    )


def service_of(t: RoutingTable, host: str, p: str) -> str | None:
    found = t.route(host, p)
    return None if found is None else found.target.service.split("/", 1)[1]


# -- primitives --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("a.example", "a.example"),
        ("A.Example:8080", "a.example"),
        ("a.example.", "a.example"),
        ("[::1]:80", "::1"),
        ("127.0.0.1:9", "127.0.0.1"),
        ("", ""),
    ],
)
def test_normalize_host(header: str, host: str) -> None:
    assert normalize_host(header) == host


def test_path_segments_ignore_empty_elements() -> None:
    assert path_segments("/") == ()
    assert path_segments("/foo/") == ("foo",)
    assert path_segments("/foo//bar") == ("foo", "bar")


# -- hosts ---------------------------------------------------------------------------------------------------


def test_two_hosts_route_to_different_services() -> None:
    t = table(ingress("web", [rule("a.example", path("/", "a")), rule("b.example", path("/api", "b"))]))
    assert service_of(t, "a.example", "/") == "a"
    assert service_of(t, "a.example", "/anything/else") == "a"
    assert service_of(t, "b.example", "/api") == "b"
    assert service_of(t, "b.example:8080", "/api/users") == "b"
    assert service_of(t, "B.EXAMPLE", "/api") == "b"
    assert t.route("b.example", "/") is None, "b.example has no / rule and there is no default backend"
    assert t.route("c.example", "/") is None
    assert t.problems == ()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("foo.example.com", "wild"),
        ("bar.example.com", "wild"),
        ("exact.example.com", "exact"),
        ("example.com", None),  # the wildcard needs one label
        ("a.b.example.com", None),  # … and only one
        ("foo.example.org", None),
    ],
)
def test_wildcard_matches_exactly_one_label_and_exact_host_wins(host: str, expected: str | None) -> None:
    services = [service("wild"), service("exact")]
    slices = [endpoint_slice("wild", 20001), endpoint_slice("exact", 20002)]
    t = table(
        ingress("w", [rule("*.example.com", path("/", "wild"))]),
        ingress("x", [rule("exact.example.com", path("/", "exact"))]),
        services=services,
        slices=slices,
    )
    assert service_of(t, host, "/") == expected


def test_rules_without_host_catch_every_other_host() -> None:
    t = table(ingress("any", [rule(None, path("/", "a"))]), ingress("h", [rule("b.example", path("/", "b"))]))
    assert service_of(t, "whatever.example", "/x") == "a"
    assert service_of(t, "", "/x") == "a"  # no Host header (HTTP/1.0)
    assert service_of(t, "b.example", "/x") == "b"


def test_matched_host_does_not_fall_through_to_host_less_rules() -> None:
    # As ingress-nginx: once the host matched, only its paths (then the default backend) count.
    t = table(
        ingress("any", [rule(None, path("/", "a"))]), ingress("h", [rule("b.example", path("/api", "b"))])
    )
    assert t.route("b.example", "/other") is None


def test_invalid_wildcard_is_a_problem() -> None:
    t = table(ingress("bad", [rule("foo.*.com", path("/", "a")), rule("ok.example", path("/", "b"))]))
    assert service_of(t, "ok.example", "/") == "b"
    assert [p.ingress for p in t.problems] == ["default/bad"]
    assert "wildcard" in t.problems[0].message


# -- paths ---------------------------------------------------------------------------------------------------


# The examples table of https://kubernetes.io/docs/concepts/services-networking/ingress/#examples
@pytest.mark.parametrize(
    ("path_type", "rule_path", "request_path", "matches"),
    [
        ("Prefix", "/", "/anything", True),
        ("Exact", "/foo", "/foo", True),
        ("Exact", "/foo", "/bar", False),
        ("Exact", "/foo", "/foo/", False),
        ("Exact", "/foo/", "/foo", False),
        ("Prefix", "/foo", "/foo", True),
        ("Prefix", "/foo", "/foo/", True),
        ("Prefix", "/foo/", "/foo", True),
        ("Prefix", "/foo/", "/foo/", True),
        ("Prefix", "/aaa/bb", "/aaa/bbb", False),
        ("Prefix", "/aaa/bbb", "/aaa/bbb", True),
        ("Prefix", "/aaa/bbb/", "/aaa/bbb", True),
        ("Prefix", "/aaa/bbb", "/aaa/bbb/", True),
        ("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", True),
        ("Prefix", "/aaa/bbb", "/aaa/bbbxyz", False),
        ("Prefix", "/foo", "/foobar", False),
        ("Prefix", "/Foo", "/foo", False),  # case-sensitive
        ("Exact", "/Foo", "/foo", False),
        ("ImplementationSpecific", "/foo", "/foo/bar", True),
        ("ImplementationSpecific", "/foo", "/foobar", False),
    ],
)
def test_path_matching_follows_the_kubernetes_examples(
    path_type: str, rule_path: str, request_path: str, matches: bool
) -> None:
    t = table(ingress("p", [rule("h", path(rule_path, "a", path_type))]))
    assert (t.route("h", request_path) is not None) is matches


@pytest.mark.parametrize(
    ("request_path", "expected"),
    [("/aaa/ccc", "b"), ("/aaa/bbb", "c"), ("/aaa/bbb/x", "c"), ("/ccc", "a"), ("/", "a")],
)
def test_longest_prefix_wins(request_path: str, expected: str) -> None:
    t = table(ingress("p", [rule("h", path("/", "a"), path("/aaa", "b"), path("/aaa/bbb", "c"))]))
    assert service_of(t, "h", request_path) == expected


def test_exact_beats_prefix_at_equal_length_and_longer_prefix_beats_shorter_exact() -> None:
    t = table(
        ingress(
            "p",
            [
                rule(
                    "h",
                    path("/foo", "a", "Prefix"),
                    path("/foo", "b", "Exact"),
                    path("/x/y/", "c", "Prefix"),
                    path("/x/y", "d", "Exact"),
                    path("/x", "e", "Exact"),
                )
            ],
        )
    )
    assert service_of(t, "h", "/foo") == "b"
    assert service_of(t, "h", "/foo/") == "a"
    assert service_of(t, "h", "/foo/bar") == "a"
    # A Prefix path's trailing slash does not make it longer: /x/y/ (Prefix) ties /x/y (Exact), Exact wins.
    assert service_of(t, "h", "/x/y") == "d"
    assert service_of(t, "h", "/x/y/z") == "c"
    assert service_of(t, "h", "/x") == "e"


def test_rules_of_one_host_merge_across_ingresses_and_older_wins_duplicates() -> None:
    old = ingress("old", [rule("h", path("/api", "a"))], created="2024-01-01T00:00:00Z")
    new = ingress("new", [rule("h", path("/api/", "b"), path("/web", "c"))], created="2024-02-01T00:00:00Z")
    t = table(new, old)  # snapshot order does not matter; age does
    assert service_of(t, "h", "/api/x") == "a"
    assert service_of(t, "h", "/web") == "c"
    assert t.problems == (
        Problem("default/new", "rule h Prefix /api/ is already routed by ingress default/old; ignored"),
    )


def test_bad_paths_are_problems_and_other_paths_still_route() -> None:
    t = table(
        ingress(
            "p",
            [rule("h", path("relative", "a"), path("/x", "b", "Regex"), path("/ok", "c"))],
        )
    )
    assert service_of(t, "h", "/ok") == "c"
    messages = [p.message for p in t.problems]
    assert any("must start with '/'" in m for m in messages)
    assert any("unknown pathType 'Regex'" in m for m in messages)


def test_implementation_specific_without_path_means_everything() -> None:
    t = table(ingress("p", [rule("h", {"pathType": "ImplementationSpecific", "backend": backend("a")})]))
    assert service_of(t, "h", "/deep/path") == "a"


# -- default backends ----------------------------------------------------------------------------------------


def test_default_backend_catches_unmatched_hosts_and_paths() -> None:
    t = table(ingress("d", [rule("a.example", path("/api", "a"))], default=backend("b")))
    assert service_of(t, "a.example", "/api") == "a"
    assert service_of(t, "a.example", "/other") == "b"
    assert service_of(t, "nope.example", "/") == "b"
    found = t.route("nope.example", "/")
    assert found is not None and found.name == "default/d (default backend)"


def test_ingress_with_only_a_default_backend() -> None:
    t = table(ingress("only", default=backend("c")))
    assert service_of(t, "any", "/x") == "c"


def test_each_host_uses_the_default_backend_of_its_own_ingress() -> None:
    first = ingress(
        "one", [rule("a.example", path("/x", "a"))], default=backend("c"), created="2024-01-01T00:00:00Z"
    )
    second = ingress(
        "two", [rule("b.example", path("/x", "b"))], default=backend("d"), created="2024-02-01T00:00:00Z"
    )
    t = table(first, second)
    assert service_of(t, "a.example", "/y") == "c"
    assert service_of(t, "b.example", "/y") == "d"
    # Unknown hosts get the cluster default: the oldest one.
    assert service_of(t, "z.example", "/") == "c"
    assert t.problems == ()


def test_rule_less_default_ingress_wins_the_cluster_default_and_conflicts_are_reported() -> None:
    with_rules = ingress(
        "r", [rule("a.example", path("/x", "a"))], default=backend("b"), created="2023-01-01T00:00:00Z"
    )
    pure = ingress("pure", default=backend("c"), created="2024-01-01T00:00:00Z")
    pure_later = ingress("later", default=backend("d"), created="2024-06-01T00:00:00Z")
    t = table(with_rules, pure, pure_later)
    assert service_of(t, "z.example", "/") == "c"
    assert service_of(t, "a.example", "/y") == "b"
    assert t.problems == (
        Problem(
            "default/later", "default backend ignored: ingress default/pure already sets the cluster default"
        ),
    )


# -- backends, ports, problems -------------------------------------------------------------------------------


def test_named_and_numbered_ports_resolve_to_the_service_port_backends() -> None:
    svc = service("multi", [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}, {"port": 7000}])
    slices = [
        endpoint_slice("multi", 21000, port_name="http"),
        endpoint_slice("multi", 21001, port_name="admin"),
        endpoint_slice("multi", 21002, port_name=""),
    ]
    t = table(
        ingress(
            "p",
            [
                rule(
                    "h",
                    path("/num", "multi", port=9000),
                    path("/name", "multi", port="http"),
                    path("/unnamed", "multi", port=7000),
                )
            ],
        ),
        services=[svc],
        slices=slices,
    )
    ports = {p: t.route("h", p).target.backends[0].port for p in ("/num", "/name", "/unnamed")}  # type: ignore[union-attr]
    assert ports == {"/num": 21001, "/name": 21000, "/unnamed": 21002}
    assert t.problems == ()


def test_missing_service_is_a_problem_and_the_route_answers_503() -> None:
    t = table(ingress("p", [rule("h", path("/", "ghost"), path("/ok", "a"))]))
    found = t.route("h", "/")
    assert found is not None
    assert found.target.backends == ()
    assert found.target.unavailable_reason == "service default/ghost not found"
    assert t.problems == (Problem("default/p", "rule h Prefix /: service default/ghost not found"),)
    assert service_of(t, "h", "/ok") == "a", "one bad path does not spoil the others"


@pytest.mark.parametrize(
    ("port", "message"),
    [(81, "service default/a has no port 81"), ("admin", "service default/a has no port admin")],
)
def test_missing_service_port_is_a_problem(port: int | str, message: str) -> None:
    t = table(ingress("p", [rule("h", path("/", "a", port=port))]))
    found = t.route("h", "/")
    assert found is not None and found.target.unavailable_reason == message
    assert t.problems == (Problem("default/p", f"rule h Prefix /: {message}"),)


def test_unsupported_backends_are_problems() -> None:
    external = service("ext", [{"port": 80}], type="ExternalName", externalName="example.org")
    resource = {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static"}}
    t = table(
        ingress(
            "p", [rule("h", path("/ext", "ext"), {"path": "/res", "pathType": "Prefix", "backend": resource})]
        ),
        services=[external],
        slices=[],
    )
    assert "ExternalName" in t.route("h", "/ext").target.unavailable_reason  # type: ignore[union-attr]
    assert "StorageBucket" in t.route("h", "/res").target.unavailable_reason  # type: ignore[union-attr]
    assert len(t.problems) == 2


def test_no_ready_endpoint_gives_a_route_without_backends() -> None:
    t = table(ingress("p", [rule("h", path("/", "a"))]), slices=[endpoint_slice("a", 20000, ready=False)])
    found = t.route("h", "/")
    assert found is not None and found.target.backends == ()
    assert found.target.unavailable_reason == "no ready endpoint for service default/a"
    assert t.problems == (), "not ready is a state, not a mistake in the Ingress"


def test_serving_terminating_endpoints_are_used_when_none_is_ready() -> None:
    draining = endpoint_slice("a", 20000)
    draining["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    found = table(ingress("p", [rule("h", path("/", "a"))]), slices=[draining]).route("h", "/")
    assert found is not None and [b.port for b in found.target.backends] == [20000]


def test_services_are_looked_up_in_the_ingress_namespace() -> None:
    t = table(
        ingress("p", [rule("h", path("/", "a"))], ns="team"),
        services=[service("a", ns="team"), service("a")],
        slices=[endpoint_slice("a", 22000, ns="team"), endpoint_slice("a", 20000)],
    )
    found = t.route("h", "/")
    assert found is not None and found.target.service == "team/a" and found.target.backends[0].port == 22000


# -- classes -------------------------------------------------------------------------------------------------


def test_only_handled_classes_are_served() -> None:
    t = build_routing_table(
        [
            ingress("mine", [rule("a", path("/", "a"))], cls="corral"),
            ingress("empty", [rule("b", path("/", "b"))]),
            ingress(
                "legacy", [rule("c", path("/", "c"))], annotations={"kubernetes.io/ingress.class": "corral"}
            ),
            ingress("nginx", [rule("d", path("/", "d"))], cls="nginx"),
            ingress("custom", [rule("e", path("/", "e"))], cls="public"),
        ],
        SERVICES,
        SLICES,
        classes=handled_classes(
            [
                {"metadata": {"name": "public"}, "spec": {"controller": "corral.dev/ingress"}},
                {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}},
            ]
        ),
    )
    assert [service_of(t, h, "/") for h in "abcde"] == ["a", "b", "c", None, "e"]
    assert set(t.ingresses) == {"default/mine", "default/empty", "default/legacy", "default/custom"}


def test_default_marked_ingress_class_is_handled() -> None:
    classes = handled_classes(
        [
            {
                "metadata": {
                    "name": "std",
                    "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
                },
                "spec": {"controller": "example.com/other"},
            }
        ]
    )
    assert classes == {"corral", "std"}
    assert is_handled(ingress("x", cls="std"), classes)
    assert not is_handled(ingress("x", cls="other"), classes)
    assert ingress_class(ingress("x", annotations={"kubernetes.io/ingress.class": "legacy"})) == "legacy"


# -- status --------------------------------------------------------------------------------------------------


def test_load_balancer_status() -> None:
    assert load_balancer_ingress("127.0.0.1", 8080) == [
        {"ip": "127.0.0.1", "ports": [{"port": 8080, "protocol": "TCP"}]}
    ]
    assert load_balancer_ingress(["10.0.0.1", "node-a.local"], 80) == [
        {"ip": "10.0.0.1", "ports": [{"port": 80, "protocol": "TCP"}]},
        {"hostname": "node-a.local", "ports": [{"port": 80, "protocol": "TCP"}]},
    ]


# -- properties ----------------------------------------------------------------------------------------------

SEGMENT = st.text(alphabet="ab.-", min_size=1, max_size=3)
SEGMENTS = st.lists(SEGMENT, max_size=4)


def _join(segments: list[str], trailing: bool) -> str:
    return "/" + "/".join(segments) + ("/" if trailing and segments else "")


@settings(max_examples=300, deadline=None)
@given(
    rule_segments=SEGMENTS, request_segments=SEGMENTS, rule_slash=st.booleans(), request_slash=st.booleans()
)
def test_prefix_is_an_element_wise_prefix(
    rule_segments: list[str], request_segments: list[str], rule_slash: bool, request_slash: bool
) -> None:
    t = table(ingress("p", [rule("h", path(_join(rule_segments, rule_slash), "a"))]))
    expected = request_segments[: len(rule_segments)] == rule_segments
    assert (t.route("h", _join(request_segments, request_slash)) is not None) is expected
    assert prefix_matches(rule_segments, request_segments) is expected


@settings(max_examples=200, deadline=None)
@given(rule_segments=st.lists(SEGMENT, min_size=1, max_size=4), extra=SEGMENT)
def test_prefix_never_matches_a_longer_last_element(rule_segments: list[str], extra: str) -> None:
    t = table(ingress("p", [rule("h", path(_join(rule_segments, False), "a"))]))
    longer = [*rule_segments[:-1], rule_segments[-1] + extra]
    assert t.route("h", _join(longer, False)) is None
    assert t.route("h", _join([*rule_segments, extra], False)) is not None


@settings(max_examples=200, deadline=None)
@given(prefixes=st.lists(SEGMENTS, min_size=1, max_size=5, unique_by=tuple), request=SEGMENTS)
def test_the_longest_matching_prefix_wins(prefixes: list[list[str]], request: list[str]) -> None:
    names = [f"s{i}" for i in range(len(prefixes))]
    services = [service(n) for n in names]
    slices = [endpoint_slice(n, 20000 + i) for i, n in enumerate(names)]
    t = table(
        ingress("p", [rule("h", *(path(_join(p, False), n) for p, n in zip(prefixes, names, strict=True)))]),
        services=services,
        slices=slices,
    )
    matching = [
        (len(_join(p, False)), n) for p, n in zip(prefixes, names, strict=True) if prefix_matches(p, request)
    ]
    found = t.route("h", _join(request, False))
    if not matching:
        assert found is None
    else:
        # Matching prefixes of one request are nested, so their lengths differ and the longest is unique.
        assert found is not None and found.target.service == f"default/{max(matching)[1]}"
