"""``corral autoscale``, ``corral describe hpa``, and HPAs that cannot work (issue 7, Done-means 6), against a
real server: clear conditions and events, nothing rescaled, refusals that name the problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from corral.api.resources import REGISTRY
from corral.cli.autoscale import build_hpa
from corral.cli.errors import CliError
from tests.conftest import Kubectl
from tests.integration.podkit import wait_until
from tests.integration.test_cli_config import Cli
from tests.integration.test_services import JSON, web_deployment

pytestmark = pytest.mark.compat


@pytest.fixture
def cli(kubectl: Kubectl, tmp_path: Path) -> Iterator[Cli]:
    yield Cli(kubectl.kubeconfig, kubectl.namespace, tmp_path)
    kubectl.run("delete", "hpa,deployment", "--all", "--wait=false", check=False)


def hpa_status(kubectl: Kubectl, name: str) -> JSON:
    return dict(json.loads(kubectl.run("get", "hpa", name, "-o", "json").stdout).get("status") or {})


def condition(status: JSON, ctype: str) -> JSON:
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), {})


def test_autoscale_creates_an_hpa_that_describe_explains(cli: Cli, kubectl: Kubectl) -> None:
    deployment = web_deployment("web", replicas=1)
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(deployment))
    out = cli.run("autoscale", "deploy/web", "--min", "1", "--max", "3", "--cpu-percent", "60").stdout
    assert out.strip() == "horizontalpodautoscaler.autoscaling/web autoscaled"
    hpa = json.loads(kubectl.run("get", "hpa", "web", "-o", "json").stdout)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    status = wait_until(lambda: hpa_status(kubectl, "web").get("conditions"), 30, "a first HPA status")
    assert status
    text = cli.run("describe", "hpa", "web").stdout
    for line in (
        "Reference:",
        "Deployment/web",
        "resource cpu on pods  (as a percentage of request):",
        "/ 60%",
        "Min replicas:",
        "Max replicas:",
        "Deployment pods:",
        "Conditions:",
        "AbleToScale",
    ):
        assert line in text, text
    again = cli.run("autoscale", "deploy/web", "--max", "3", check=False)
    assert again.returncode != 0
    assert 'horizontalpodautoscalers.autoscaling "web" already exists' in again.stderr


def test_autoscale_refuses_bad_flags_before_connecting() -> None:
    deployments = REGISTRY.require("deployments.apps")
    with pytest.raises(CliError, match="must be larger or equal to --min"):
        build_hpa(
            deployments,
            "web",
            hpa_name=None,
            max_replicas=2,
            min_replicas=3,
            cpu_percent=None,
            rps=None,
            idle_seconds=None,
        )
    with pytest.raises(CliError, match="--idle-seconds needs --min=0"):
        build_hpa(
            deployments,
            "web",
            hpa_name=None,
            max_replicas=2,
            min_replicas=1,
            cpu_percent=None,
            rps=None,
            idle_seconds=5,
        )
    with pytest.raises(CliError, match="cannot autoscale a Service"):
        build_hpa(
            REGISTRY.require("services"),
            "web",
            hpa_name=None,
            max_replicas=2,
            min_replicas=1,
            cpu_percent=None,
            rps=None,
            idle_seconds=None,
        )
    zero = build_hpa(
        deployments,
        "web",
        hpa_name=None,
        max_replicas=4,
        min_replicas=0,
        cpu_percent=None,
        rps="20",
        idle_seconds=60,
    )
    assert zero["spec"]["minReplicas"] == 0
    assert zero["metadata"]["annotations"] == {"corral.dev/scale-to-zero-idle-seconds": "60"}
    assert zero["spec"]["metrics"][0]["pods"]["metric"]["name"] == "requests_per_second"


def test_hpas_that_cannot_work_say_why_and_scale_nothing(kubectl: Kubectl) -> None:
    # No cpu request: a Utilization target cannot be computed.
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(web_deployment("norequests", replicas=2)))
    kubectl.run("autoscale", "deploy/norequests", "--min=1", "--max=4", "--cpu-percent=50")
    status = wait_until(
        lambda: (
            (s := hpa_status(kubectl, "norequests"))
            and condition(s, "ScalingActive").get("status") == "False"
            and s
        ),
        60,
        "ScalingActive False",
    )
    assert condition(status, "ScalingActive")["reason"] == "FailedGetResourceMetric"
    assert "missing request for cpu" in condition(status, "ScalingActive")["message"]
    # A target that does not exist.
    missing = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "ghost"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"},
            "maxReplicas": 3,
        },
    }
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(missing))
    status = wait_until(
        lambda: (
            (s := hpa_status(kubectl, "ghost")) and condition(s, "AbleToScale").get("status") == "False" and s
        ),
        30,
        "AbleToScale False",
    )
    assert condition(status, "AbleToScale")["reason"] == "FailedGetScale"
    assert 'deployments.apps "ghost" not found' in condition(status, "AbleToScale")["message"]
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=ghost", "-o", "json"
    ).stdout
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert reasons.count("FailedGetScale") == 1  # one event whose count grows, not one per sync
    # min above max: refused by the API server, naming the field.
    bad = dict(missing, metadata={"name": "bad"})
    bad["spec"] = {**missing["spec"], "minReplicas": 5, "maxReplicas": 2}
    result = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    assert (
        "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`" in result.stderr
    )
    # Nothing was rescaled by any of them.
    deployment = json.loads(kubectl.run("get", "deploy", "norequests", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 2
