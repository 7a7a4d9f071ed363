"""The compose stack of ``make image``'s images, for real: podman-compose starts it, one question goes through
the load balancer to an API replica, which retrieves from the Chroma server, answers on a worker container,
records the answer in PostgreSQL and counts the request in Redis; then /metrics, and everything is torn down.

Marked ``deploy``: it needs podman, podman-compose and the images, so only ``make test-deploy`` runs it (a
cold image build does not fit CI's time; docs/deploy/README.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import REPO
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.deploy

COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
CONTAINERS_CONF = REPO / "build" / "container" / "containers.conf"  # written by `make image`
START_TIMEOUT_S = 900  # two API replicas, two workers and Chroma loading at once on a small machine


@dataclass
class Stack:
    project: str
    url: str
    env: dict[str, str]
    started: float

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=600, check=False)
        if check and done.returncode:
            command = " ".join(args)
            raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def compose(self, *args: str, check: bool = True) -> str:
        return self.run("podman-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args, check=check)

    def containers(self, service: str | None = None, *flags: str) -> list[str]:
        """Names of the project's containers (of one service), by the labels both compose tools set."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return self.run("podman", "ps", *flags, "--format", "{{.Names}}", *filters).split()

    def container(self, service: str) -> str:
        (name,) = self.containers(service)
        return name

    def exec(self, service: str, *command: str) -> str:
        return self.run("podman", "exec", self.container(service), *command)


def setup_done(stack: Stack) -> bool:
    """The one-shot ``setup`` job (index samples/, create the demo key) exited 0. podman-compose starts the
    API replicas without waiting for it, and they are ready before it is done."""
    names = stack.containers("setup", "--all")  # --all: an exited container too
    status = "{{.State.Status}} {{.State.ExitCode}}"
    if names and stack.run("podman", "inspect", "--format", status, *names).split() == ["exited", "0"]:
        return True
    time.sleep(2)  # podman is not a cheap poll
    return False


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for tool in ("podman", "podman-compose"):
        assert shutil.which(tool), f"{tool} is missing: `make test-deploy` installs it through `make image`"
    assert CONTAINERS_CONF.is_file(), "run `make image` first (it writes build/container/containers.conf)"
    port = free_port()
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "PENNY_PORT": str(port)}
    stack = Stack(f"penny-test-{os.getpid()}", f"http://127.0.0.1:{port}", env, time.monotonic())
    try:
        stack.compose("up", "-d")
        wait_for(lambda: ready(stack.url), START_TIMEOUT_S, "the load balancer to find a ready API replica")
        wait_for(
            lambda: setup_done(stack), START_TIMEOUT_S, "the setup job (indexing samples/, the demo key)"
        )
        print(f"\ncompose up to ready through the load balancer: {time.monotonic() - stack.started:.0f} s")
        yield stack
    finally:
        print(stack.compose("logs", check=False)[-6000:])
        stack.compose("down", "-v", check=False)
        left = stack.containers(None, "--all")
        assert not left, f"containers left behind: {left}"


def test_a_question_through_the_load_balancer_is_answered_from_the_stack(stack: Stack) -> None:
    key = stack.exec("api-1", "cat", "/data/demo.key").strip()
    body = {"question": "Who conquered England in 1066?"}
    response = httpx.post(
        f"{stack.url}/v1/ask", json=body, headers={"authorization": f"Bearer {key}"}, timeout=600
    )
    print(f"compose up to first answer: {time.monotonic() - stack.started:.0f} s")
    assert response.status_code == 200, response.text
    answer = response.json()
    print(answer)
    assert "William" in answer["answer"]
    assert answer["tier"] == "local"
    assert any(source["source"].endswith("normans.md") for source in answer["sources"])  # from Chroma

    # The ledger is PostgreSQL's, the rate-limit counters are Redis's.
    rows = stack.exec("postgres", "psql", "-U", "penny", "-tAc", "select count(*) from answers")
    assert int(rows) >= 1
    assert stack.exec("redis", "redis-cli", "--scan", "--pattern", "penny:limits*").split()


def test_metrics_come_through_the_load_balancer(stack: Stack) -> None:
    metrics = httpx.get(f"{stack.url}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert "penny_http_requests" in metrics.text
    assert "penny_pool_slots_total" in metrics.text  # the remote workers' slots, seen by this replica


def test_both_replicas_are_in_rotation(stack: Stack) -> None:
    for service in ("api-1", "api-2"):
        stack.exec(
            service, "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz')"
        )
