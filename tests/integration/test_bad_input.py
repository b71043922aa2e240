"""Bad input gets the right Status and a message naming the problem, quickly, and the server keeps serving."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator

import pytest
import requests

from corral.client.kubeconfig import load_access
from corral.testing.process import ServerProcess

CM = "/api/v1/namespaces/default/configmaps"


class Http:
    def __init__(self, server: ServerProcess) -> None:
        access = load_access(server.kubeconfig)
        self.base = access.server
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {access.token}"
        ca = server.kubeconfig.parent / "pki" / "ca.crt"
        self.ca = str(ca)

    def call(
        self, method: str, path: str, body: bytes | str | None = None, content_type: str = "application/json"
    ) -> requests.Response:
        return self.session.request(
            method,
            self.base + path,
            data=body,
            headers={"Content-Type": content_type},
            timeout=30,
            verify=self.ca,
        )


@pytest.fixture
def http(server: ServerProcess) -> Iterator[Http]:
    client = Http(server)
    yield client
    # Whatever the test sent, the server is still healthy afterwards.
    assert client.call("GET", "/healthz").text == "ok"
    client.session.close()


def _status(resp: requests.Response) -> dict:  # type: ignore[type-arg]
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.text.endswith("\n")
    doc = json.loads(resp.text)
    assert doc["kind"] == "Status" and doc["status"] == "Failure" and doc["code"] == resp.status_code
    return doc


def test_ten_megabyte_body_is_413(http: Http) -> None:
    body = b'{"metadata":{"name":"big"},"data":{"a":"' + b"x" * (10 * 1024 * 1024) + b'"}}'
    resp = http.call("POST", CM, body)
    assert resp.status_code == 413
    assert _status(resp)["reason"] == "RequestEntityTooLarge"


def test_billion_laughs_yaml_is_rejected_fast(http: Http) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n" + "\n".join(lines) + "\n"
    start = time.monotonic()
    resp = http.call("POST", CM, doc, "application/yaml")
    elapsed = time.monotonic() - start
    assert resp.status_code == 400
    assert "alias" in _status(resp)["message"] or "expands" in _status(resp)["message"]
    assert elapsed < 1.0


def test_deeply_nested_json_is_rejected(http: Http) -> None:
    body = '{"metadata":{"name":"deep"},"data":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"
    start = time.monotonic()
    resp = http.call("POST", CM, body)
    assert resp.status_code == 400
    assert "nested" in _status(resp)["message"] or "recursion" in _status(resp)["message"].lower()
    assert time.monotonic() - start < 1.0


def test_invalid_name_is_422_with_field_path(http: Http) -> None:
    resp = http.call("POST", CM, json.dumps({"metadata": {"name": "Bad_Name!"}}))
    assert resp.status_code == 422
    doc = _status(resp)
    assert doc["reason"] == "Invalid"
    assert doc["message"].startswith(
        'ConfigMap "Bad_Name!" is invalid: metadata.name: Invalid value: "Bad_Name!"'
    )
    assert doc["details"]["causes"][0]["field"] == "metadata.name"


def test_unknown_field_under_strict_is_400(http: Http) -> None:
    resp = http.call(
        "POST", CM + "?fieldValidation=Strict", json.dumps({"metadata": {"name": "strict"}, "spec": {"x": 1}})
    )
    assert resp.status_code == 400
    assert _status(resp)["message"] == 'strict decoding error: unknown field "spec"'


def test_unknown_field_under_warn_is_dropped_with_warning(http: Http) -> None:
    resp = http.call("POST", CM, json.dumps({"metadata": {"name": "warned"}, "bogus": 1}))
    assert resp.status_code == 201
    assert 'unknown field \\"bogus\\"' in resp.headers["Warning"]
    assert "bogus" not in resp.json()


def test_wrong_type_is_400(http: Http) -> None:
    resp = http.call(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        json.dumps({"metadata": {"name": "typed"}, "spec": {"replicas": "three"}}),
    )
    assert resp.status_code == 400
    assert "spec.replicas" in _status(resp)["message"]


def test_stale_resource_version_is_409(http: Http) -> None:
    created = http.call("POST", CM, json.dumps({"metadata": {"name": "stale-rv"}})).json()
    http.call("PATCH", CM + "/stale-rv", json.dumps({"data": {"a": "1"}}), "application/merge-patch+json")
    created["data"] = {"a": "2"}
    resp = http.call("PUT", CM + "/stale-rv", json.dumps(created))
    assert resp.status_code == 409
    doc = _status(resp)
    assert doc["reason"] == "Conflict"
    assert doc["message"] == (
        'Operation cannot be fulfilled on configmaps "stale-rv": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )


def test_unknown_kind_is_404(http: Http) -> None:
    resp = http.call("GET", "/api/v1/namespaces/default/frobnicators")
    assert resp.status_code == 404
    assert _status(resp)["message"] == "the server could not find the requested resource"
    resp = http.call("GET", "/apis/nope.example.com/v1/things")
    assert resp.status_code == 404


def test_unsupported_media_type_is_415(http: Http) -> None:
    resp = http.call("POST", CM, b"a=b", "text/plain")
    assert resp.status_code == 415
    assert "unknown format" in _status(resp)["message"]


def test_protobuf_of_a_kind_without_a_decoder_is_415(http: Http) -> None:
    # runtime.Unknown{typeMeta{apiVersion "v1", kind "LimitRange"}, raw ""}
    body = b"k8s\x00" + b"\x0a\x10\x0a\x02v1\x12\x0aLimitRange" + b"\x12\x00"
    resp = http.call("POST", CM, body, "application/vnd.kubernetes.protobuf")
    assert resp.status_code == 415
    assert "unknown format" in _status(resp)["message"]


def test_malformed_protobuf_is_400(http: Http) -> None:
    resp = http.call("POST", CM, b"k8s\x00\x0a\x0b", "application/vnd.kubernetes.protobuf")
    assert resp.status_code == 400
    assert "protobuf" in _status(resp)["message"]


def test_garbage_json_is_400(http: Http) -> None:
    resp = http.call("POST", CM, b"{not json")
    assert resp.status_code == 400
    assert _status(resp)["reason"] == "BadRequest"


def test_missing_token_is_401(server: ServerProcess) -> None:
    access = load_access(server.kubeconfig)
    resp = requests.get(
        access.server + CM, verify=str(server.kubeconfig.parent / "pki" / "ca.crt"), timeout=10
    )
    assert resp.status_code == 401
    assert resp.json()["reason"] == "Unauthorized"
    resp = requests.get(
        access.server + CM,
        headers={"Authorization": "Bearer wrong"},
        verify=str(server.kubeconfig.parent / "pki" / "ca.crt"),
        timeout=10,
    )
    assert resp.status_code == 401


def test_missing_namespace_is_404(http: Http) -> None:
    resp = http.call(
        "POST", "/api/v1/namespaces/nosuchns/configmaps", json.dumps({"metadata": {"name": "x"}})
    )
    assert resp.status_code == 404
    assert _status(resp)["message"] == 'namespaces "nosuchns" not found'


def test_tls_is_verified_with_the_cluster_ca(server: ServerProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(server.kubeconfig.parent / "pki" / "ca.crt"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    resp = requests.get(
        load_access(server.kubeconfig).server + "/version",
        verify=str(server.kubeconfig.parent / "pki" / "ca.crt"),
        timeout=10,
    )
    assert resp.json()["minor"] == "32"
