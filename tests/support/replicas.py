"""Penny scaled out on loopback, as deploy/kubernetes/ runs it, without containers: API replicas
(`penny serve`, each with its own data dir) sharing one PostgreSQL ledger, one Redis, one Chroma server and
remote pool workers (``python -m assistant.local.pool.worker``), the paid tier being the fake one.

Used by tests/deploy/test_replicas.py (the claims) and benchmarks/bench_replicas.py (answers/s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.limits import REDIS_URL
from tests.support.servers import (
    BIN,
    chroma_server,
    free_port,
    penny_env,
    ready_or_raise,
    spawn,
    stop,
    worker_command,
)

ADMIN_KEY = "admin-test-key-replicas-0123"


@dataclass
class Service:
    """One process of the stack on its own port: started, killed and started again by the tests."""

    name: str
    command: list[str]
    log: Path
    ready_path: str
    env: dict[str, str] | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        """Spawn it (on the same port as before, when restarted); ``wait_ready`` waits for it."""
        self.process = spawn([*self.command, "--port", str(self.port)], self.log, self.env)
        return self

    def wait_ready(self, timeout_s: float = 480) -> None:
        assert self.process is not None
        ready_or_raise(f"{self.url}{self.ready_path}", self.process, self.log, timeout_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as when a pod or a node dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


class Stack:
    """Chroma server, ``workers`` pool workers and ``replicas`` API replicas; a context manager.

    ``settings`` (PENNY_* names without the prefix) are added to, or override, the replicas' defaults here.
    Replicas are numbered from 0 (``replicas[0]`` is "replica A")."""

    def __init__(
        self,
        root: Path,
        *,
        model: Path,
        model_cache: Path,
        db_url: str,
        redis_prefix: str,
        paid_url: str,
        replicas: int = 2,
        workers: int = 2,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.model = model
        self.model_cache = model_cache
        self.db_url = db_url
        self.redis_prefix = redis_prefix
        self.paid_url = paid_url
        self.replica_count = replicas
        self.settings = settings or {}
        self.workers = [
            Service(
                f"worker-{i}",
                [*worker_command(model), "--parent-pid", str(os.getpid())],  # gone with this process
                root / f"worker-{i}.log",
                "/healthz",
            )
            for i in range(workers)
        ]
        self.replicas: list[Service] = []
        self.chroma_url = ""
        self._exit = ExitStack()

    def __enter__(self) -> Stack:
        try:
            self.chroma_url = self._exit.enter_context(chroma_server(self.root / "chroma"))
            self._exit.callback(self._stop_all)
            self.replicas = [self._replica(i) for i in range(self.replica_count)]
            for service in [*self.workers, *self.replicas]:  # all at once: a replica waits for a worker
                service.start()
            for service in [*self.workers, *self.replicas]:
                service.wait_ready()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._exit.close()

    def _stop_all(self) -> None:
        for service in [*self.replicas, *self.workers]:
            service.stop()

    def replica_env(self, data_dir: Path) -> dict[str, str]:
        """The environment every replica shares (a ConfigMap's worth), with its own data dir."""
        return penny_env(
            data_dir,
            self.model_cache,
            ADMIN_KEY=ADMIN_KEY,
            MODELS__MAX_TOKENS="24",
            LEDGER__DB_URL=self.db_url,
            LEDGER__POOL_SIZE="8",  # two replicas and the suite share PostgreSQL's 100 connections
            LEDGER__OVER_BUDGET_POLICY="refuse",
            REDIS_URL=REDIS_URL,
            LIMITS__REDIS_PREFIX=self.redis_prefix,
            INDEX__CHROMA_URL=self.chroma_url,
            POOL__ENABLED="true",
            POOL__REMOTE_URLS=json.dumps([worker.url for worker in self.workers]),
            POOL__HEALTH_INTERVAL_S="0.5",
            PAID__BASE_URL=self.paid_url,
            PAID__MAX_TOKENS="64",
            CASCADE__SHADOW_RATE="0",  # every paid call the fake sees is a user's
            **self.settings,
        )

    def _replica(self, i: int) -> Service:
        env = self.replica_env(self.root / f"replica-{i}")
        return Service(
            f"replica-{i}", [str(BIN / "penny"), "serve"], self.root / f"replica-{i}.log", "/readyz", env
        )

    # -- operators' work, through the admin API ------------------------------------------------------

    def admin(self, replica: int = 0) -> httpx.Client:
        return httpx.Client(
            base_url=self.replicas[replica].url,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=60,
        )

    def add_user(
        self,
        name: str,
        *,
        budget_usd: str | None = None,
        limits: dict[str, int] | None = None,
        team: str | None = None,
        replica: int = 0,
    ) -> str:
        """Create user ``name`` (optionally with a monthly budget, rate limits and a team); its API key."""
        with self.admin(replica) as admin:
            checked(admin.post("/admin/users", json={"name": name, "budget_usd": budget_usd}))
            key = checked(admin.post(f"/admin/users/{name}/keys", json={}))["key"]
            if limits:
                checked(admin.put(f"/admin/limits/users/{name}", json=limits))
            if team:
                if team not in {t["name"] for t in checked(admin.get("/admin/teams"))["data"]}:
                    checked(admin.post("/admin/teams", json={"name": team}))
                checked(admin.put(f"/admin/teams/{team}/members/{name}", json={"role": "member"}))
        return str(key)


def checked(response: httpx.Response) -> Any:
    """The JSON body of a successful response; raises with the body otherwise."""
    if response.status_code >= 400:
        raise AssertionError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )
    return response.json()
