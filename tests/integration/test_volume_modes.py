"""Where volumes appear, in both volume modes, with a real server per mode, kubectl and the pod's own process.

* Both modes: a pod gets a ConfigMap key and a Secret key as env vars and as files at their ``mountPath``; a
  ConfigMap change reaches the file within 5 s with the same process (no restart); ``kubectl exec`` sees it.
  Namespace mode reads the real absolute path (a random ``/etc/corral-test-<hex>`` directory, so no real host
  config is touched), sandbox mode the same relative path under ``$CORRAL_VOLUMES``.
* Namespace mode, after the server is SIGKILLed and started again: the adopted container keeps its mounts,
  live updates continue and ``kubectl exec`` still enters its namespace.
* Namespace mode only: the host does not see the files (the mounts are private to the container);
  ``readOnly`` is enforced (EROFS); a Memory ``emptyDir`` is a tmpfs of its ``sizeLimit``; a ``subPath`` file
  mount; the mount points the agent created on the host, and its tmpfs, are gone once the pod is deleted.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import JSON, Pods, alive, main_pid, pod_doc, wait_until

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Overrides the session server: one server per volume mode (``indirect`` parameter)."""
    mode = str(request.param)
    if mode == "namespace":
        from corral.agent.mounting import host_facts
        from corral.agent.mountplan import namespace_problem

        problem = namespace_problem(host_facts())
        if problem:
            pytest.skip(f"namespace volume mode not possible here: {problem}")
    proc = ServerProcess(tmp_path_factory.mktemp(f"corral-{mode}"), volume_mode=mode).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def pods(kubectl: Kubectl, server: ServerProcess) -> Iterator[Pods]:
    p = Pods(kubectl, server.kubeconfig)
    try:
        yield p
        p.delete_all()
    finally:
        p.close()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A random directory name under /etc that does not exist: the tests' mountPaths live below it."""
    path = Path(f"/etc/corral-test-{uuid.uuid4().hex[:12]}")
    assert not path.exists()
    yield path
    assert not path.exists(), f"{path} was left behind on the host"


def configmap(name: str, data: dict[str, str]) -> JSON:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str, data: dict[str, str]) -> JSON:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


def last_line(pods: Pods, name: str) -> str:
    result = pods.kubectl.run("logs", name, "--tail=1", check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in the test's (= the host's) mount namespace."""
    prefix = str(path.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


@pytest.mark.parametrize("server", ["sandbox", "namespace"], indirect=True)
def test_configmap_and_secret_as_env_and_files_with_live_update(
    pods: Pods, server: ServerProcess, host_dir: Path
) -> None:
    namespace_mode = server.volume_mode == "namespace"
    # Namespace mode: the real absolute path. Sandbox mode: the same path below the container's own root.
    prefix = str(host_dir) if namespace_mode else f"$CORRAL_VOLUMES{host_dir}"
    reader = (
        f'while :; do printf "%s|%s|%s|%s\\n" "$GREETING" "$TOKEN" "$(cat {prefix}/app/greeting)" '
        f'"$(cat {prefix}/creds/token)"; sleep 0.1; done'
    )
    pods.apply(configmap("app", {"greeting": "hello-v1"}), secret("creds", {"token": "t0k3n"}))
    pods.apply(
        pod_doc(
            "reader",
            ["sh", "-c", reader],
            env=[
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ],
            volumes=[
                {"name": "cfg", "configMap": {"name": "app"}},
                {"name": "sec", "secret": {"secretName": "creds"}},
            ],
            container={
                "volumeMounts": [
                    {"name": "cfg", "mountPath": f"{host_dir}/app"},
                    {"name": "sec", "mountPath": f"{host_dir}/creds", "readOnly": True},
                ]
            },
        )
    )
    pod = pods.wait_running("reader", timeout=20)
    pid = main_pid(pod)
    assert pid is not None
    wait_until(
        lambda: last_line(pods, "reader") == "hello-v1|t0k3n|hello-v1|t0k3n",
        10,
        f"the pod to print env and files, last line: {last_line(pods, 'reader')!r}",
    )
    if namespace_mode:
        # The agent made the mount points on the host; the mounts themselves are private to the container.
        assert (host_dir / "app").is_dir() and not (host_dir / "app" / "greeting").exists()
    else:
        assert not host_dir.exists()

    pods.apply(configmap("app", {"greeting": "hello-v2"}))
    # Env vars keep their start-time value (as in Kubernetes); the file changes, without a restart.
    wait_until(
        lambda: last_line(pods, "reader") == "hello-v1|t0k3n|hello-v2|t0k3n",
        5,
        "the updated value in the file",
    )
    after = pods.get("reader")
    assert after is not None and main_pid(after) == pid
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0

    code, out, err = pods.exec("reader", "sh", "-c", f"cat {prefix}/app/greeting {prefix}/creds/token")
    assert (code, out) == (0, "hello-v2t0k3n"), err
    # Both modes keep the sandbox layout too: $CORRAL_VOLUMES (also the default working dir) holds the links.
    code, out, err = pods.exec(
        "reader", "sh", "-c", f'cat "$CORRAL_VOLUMES{host_dir}/app/greeting" .{host_dir}/app/greeting'
    )
    assert (code, out) == (0, "hello-v2hello-v2"), err

    pods.delete_all()
    wait_until(
        lambda: not host_dir.exists(), 10, f"the agent to remove the mount points it created ({host_dir})"
    )


@pytest.mark.parametrize("server", ["namespace"], indirect=True)
def test_namespace_mode_read_only_tmpfs_subpath_and_cleanup(
    pods: Pods, server: ServerProcess, host_dir: Path
) -> None:
    pods.apply(configmap("app", {"greeting": "hello", "other": "x"}))
    pods.apply(
        pod_doc(
            "mounts",
            ["sh", "-c", "exec sleep 3600"],
            volumes=[
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "cfg", "configMap": {"name": "app"}},
            ],
            container={
                "workingDir": f"{host_dir}/rw",
                "volumeMounts": [
                    {"name": "scratch", "mountPath": f"{host_dir}/ro", "readOnly": True},
                    {"name": "scratch", "mountPath": f"{host_dir}/rw"},
                    {"name": "mem", "mountPath": f"{host_dir}/mem"},
                    {"name": "cfg", "mountPath": f"{host_dir}/one.conf", "subPath": "greeting"},
                    {"name": "cfg", "mountPath": f"{host_dir}/rw/conf"},  # nested in the rw mount
                ],
            },
        )
    )
    pods.wait_running("mounts", timeout=20)

    code, out, err = pods.exec("mounts", "touch", f"{host_dir}/ro/x")
    assert code != 0 and "Read-only file system" in err, (code, out, err)
    # The same volume is writable through its read-write mount, and the write shows through the other one;
    # the working directory is the mount (set after mounting), not the empty mount point under it.
    code, out, err = pods.exec("mounts", "sh", "-c", f"echo hi > x && pwd && cat {host_dir}/ro/x")
    assert (code, out) == (0, f"{host_dir}/rw\nhi\n"), err

    code, out, err = pods.exec("mounts", "stat", "-f", "-c", "%T %b %S", f"{host_dir}/mem")
    fs_type, blocks, block_size = out.split()
    assert code == 0 and fs_type == "tmpfs" and int(blocks) * int(block_size) == 1024 * 1024, (out, err)
    assert mounts_under(server.data_dir), "the Memory emptyDir is a tmpfs under the pod's sandbox"

    code, out, err = pods.exec("mounts", "cat", f"{host_dir}/one.conf", f"{host_dir}/rw/conf/other")
    assert (code, out) == (0, "hellox"), err
    host_file = host_dir / "one.conf"
    assert host_file.is_file() and host_file.stat().st_size == 0  # the mount point for a file: an empty file

    pods.delete_all()
    wait_until(
        lambda: not host_dir.exists(), 10, f"the agent to remove the mount points it created ({host_dir})"
    )
    wait_until(lambda: not mounts_under(server.data_dir), 10, "the tmpfs to be unmounted")


def test_namespace_mode_survives_a_sigkilled_agent(
    tmp_path: Path, kubectl_cache: Path, host_dir: Path
) -> None:
    from corral.agent.mounting import host_facts
    from corral.agent.mountplan import namespace_problem

    if problem := namespace_problem(host_facts()):
        pytest.skip(f"namespace volume mode not possible here: {problem}")
    server = ServerProcess(tmp_path / "data", volume_mode="namespace").start()
    pods: Pods | None = None
    pid: int | None = None
    try:
        kubectl = Kubectl(server.kubeconfig, kubectl_cache, "adopt-volumes")
        ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: adopt-volumes\n"
        kubectl.run("apply", "-f", "-", namespace=False, stdin=ns)
        pods = Pods(kubectl, server.kubeconfig)
        pods.apply(configmap("app", {"greeting": "v1"}))
        reader = f"while :; do cat {host_dir}/app/greeting; echo; sleep 0.1; done"
        pods.apply(
            pod_doc(
                "reader",
                ["sh", "-c", reader],
                volumes=[{"name": "cfg", "configMap": {"name": "app"}}],
                container={"volumeMounts": [{"name": "cfg", "mountPath": f"{host_dir}/app"}]},
            )
        )
        pid = main_pid(pods.wait_running("reader", timeout=20))
        assert pid is not None
        wait_until(lambda: last_line(pods, "reader") == "v1", 10, "the mounted value")

        server.kill()
        pods.close()
        pods = None
        assert alive(pid), "the container must outlive a SIGKILLed server"
        assert host_dir.is_dir(), "its mount point must stay while it runs"

        server.start()
        pods = Pods(kubectl, server.kubeconfig)
        pods.apply(configmap("app", {"greeting": "v2"}))
        wait_until(lambda: last_line(pods, "reader") == "v2", 5, "the update through the adopted mount")
        code, out, err = pods.exec("reader", "cat", f"{host_dir}/app/greeting")
        assert (code, out) == (0, "v2"), err
        after = pods.get("reader")
        assert after is not None and main_pid(after) == pid
        pods.delete_all()
        wait_until(lambda: not host_dir.exists(), 10, "the mount points to be removed by the new agent")
    finally:
        if pods is not None:
            pods.close()
        server.stop()
        if pid is not None:
            wait_until(lambda: not alive(pid), 15, "the pod process to stop with the server")
