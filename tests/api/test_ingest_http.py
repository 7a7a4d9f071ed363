"""HTTP ingestion over real HTTP: the real app (uvicorn), real Chroma and ledger in tmp, the real embedder.

Uploads are indexed by the app's own worker thread; tests poll the job until it ends (a deadline, not a
timed assertion) and then read the index directly to see what retrieval would find.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from assistant.service import Penny
from tests.support.documents import write_pdf
from tests.support.servers import running_server, wait_for

ADMIN_KEY = "admin-ingest-key-0123456789"
MEMBERSHIPS = {"alice": {"red": "admin"}, "bob": {"red": "member"}, "carol": {"blue": "member"}}
MEMBERSHIPS |= {"dave": {"red": "member", "blue": "member"}, "erin": {}}
VACATION = "# Vacation policy\n\nStaff take 31 days of paid leave; request it in the Koala portal.\n"


class World:
    def __init__(self, base: str, penny: Penny, keys: dict[str, str]) -> None:
        self.base, self.penny, self.keys = base, penny, keys

    def client(self, user: str) -> httpx.Client:
        key = ADMIN_KEY if user == "admin" else self.keys[user]
        return httpx.Client(base_url=self.base, timeout=120, headers={"authorization": f"Bearer {key}"})

    def upload(
        self, user: str, collection: str, files: list[tuple[str, bytes]], **form: str
    ) -> httpx.Response:
        parts = [("files", (name, content)) for name, content in files]
        with self.client(user) as client:
            return client.post(f"/v1/collections/{collection}/documents", files=parts, data=form)

    def finished(self, user: str, job_id: str) -> dict[str, Any]:
        with self.client(user) as client:
            jobs: list[dict[str, Any]] = []

            def ended() -> bool:
                jobs.append(client.get(f"/v1/jobs/{job_id}").json())
                return jobs[-1]["status"] in ("done", "failed")

            wait_for(ended, 300, f"job {job_id}")
            return jobs[-1]

    def ingest(self, user: str, collection: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        made = self.upload(user, collection, files)
        assert made.status_code == 202, made.text
        assert made.headers["location"] == f"/v1/jobs/{made.json()['id']}"
        return self.finished(user, made.json()["id"])

    def sources(self, collection: str, query: str) -> list[str]:
        return [p.source for p in self.penny.retriever(collection).search(query, k=3)]

    def chunks(self, collection: str) -> dict[str, set[str]]:
        return {s: set(e.ids) for s, e in self.penny.ingester(collection).manifest().items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, model_cache) -> Iterator[World]:  # type: ignore[no-untyped-def]
    from assistant.api import create_app
    from assistant.settings import Settings

    root = tmp_path_factory.mktemp("ingest")
    settings = Settings(
        data_dir=root / "data",
        models={"local": "smollm2-135m", "cache_dir": model_cache},
        ingest={"max_file_bytes": 1_100_000, "max_request_bytes": 2_500_000},
    )
    penny = Penny(settings)
    ledger = penny.ledger
    for team in ("red", "blue"):
        ledger.create_team(team)
    keys = {}
    for user, teams in MEMBERSHIPS.items():
        ledger.add_user(user)
        keys[user] = ledger.create_key(user)[1]
        for team, role in teams.items():
            ledger.set_member(team, user, role)  # type: ignore[arg-type]
    previous = os.environ.get("PENNY_ADMIN_KEY")
    os.environ["PENNY_ADMIN_KEY"] = ADMIN_KEY
    try:
        with running_server(create_app(settings, penny, warm_up=False)) as base:
            yield World(base, penny, keys)
    finally:
        if previous is None:
            os.environ.pop("PENNY_ADMIN_KEY", None)
        else:
            os.environ["PENNY_ADMIN_KEY"] = previous


def test_upload_many_then_retrieve_and_job_visibility(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pdf = write_pdf(tmp_path / "x.pdf", [["The cafeteria closes at 3 pm on Fridays for deep cleaning."]])
    job = world.ingest(
        "bob", "red-handbook", [("vacation.md", VACATION.encode()), ("../../cafe.pdf", pdf.read_bytes())]
    )
    assert job["status"] == "done" and job["collection"] == "red-handbook"
    assert [(f["name"], f["status"]) for f in job["files"]] == [
        ("vacation.md", "indexed"),
        ("cafe.pdf", "indexed"),
    ]
    assert all(f["chunks"] > 0 and f["error"] is None for f in job["files"])
    assert world.sources("red-handbook", "How many days of paid leave?")[0] == "vacation.md"
    assert world.sources("red-handbook", "When does the cafeteria close on Friday?")[0] == "cafe.pdf"
    assert not list((world.penny.settings.ingest_spool_dir).glob(f"{job['id']}*"))  # spool cleaned

    # The run's cost is recorded for the collection, its team and bob, and shows in bob's usage.
    ledger = world.penny.ledger
    [run] = [r for r in ledger.ingest_costs("red-handbook") if r.job_id == job["id"]]
    assert (run.files, run.chunks) == (2, sum(f["chunks"] for f in job["files"]))
    assert run.user_id == ledger.get_user("bob").id and run.team_id == ledger.get_team("red").id
    assert run.seconds > 0 and run.micro_usd == ledger.compute_cost_micro_usd(run.seconds) > 0
    with world.client("bob") as client:
        usage = client.get("/v1/usage", params={"by": "collection"}).json()
    [mine] = [row for row in usage["data"] if row["key"] == "red-handbook"]
    assert (mine["ingests"], mine["ingest_micro_usd"], mine["storage_micro_usd"]) == (1, run.micro_usd, 0)
    assert mine["total_micro_usd"] == run.micro_usd + mine["local_micro_usd"] + mine["paid_micro_usd"]

    # The new collection was claimed for bob's only team: its members now see it, others do not.
    for user, sees in (("alice", True), ("carol", False)):
        with world.client(user) as client:
            listed = {c["name"]: c["team"] for c in client.get("/v1/collections").json()["data"]}
        assert (listed.get("red-handbook") == "red") is sees
    # The job is bob's: alice (same team) and carol get 404; the admin key sees it.
    for user, status in (("alice", 404), ("carol", 404), ("admin", 200)):
        with world.client(user) as client:
            assert client.get(f"/v1/jobs/{job['id']}").status_code == status
    with world.client("bob") as client:
        assert client.get("/v1/jobs/job_doesnotexist").status_code == 404


def test_unchanged_reupload_and_broken_file_fails_alone(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manual = write_pdf(tmp_path / "m.pdf", [["The boiler is serviced every March by Tallis Heating."]])
    first = world.ingest(
        "alice", "red-ops", [("notes.md", VACATION.encode()), ("manual.pdf", manual.read_bytes())]
    )
    assert [f["status"] for f in first["files"]] == ["indexed", "indexed"]
    before = world.chunks("red-ops")

    # Same notes again, a corrupt PDF under the indexed manual's name, a new good file, a duplicate name.
    again = world.ingest(
        "alice",
        "red-ops",
        [
            ("notes.md", VACATION.encode()),
            ("manual.pdf", b"%PDF-1.4\nthis is not really a pdf"),
            ("parking.txt", b"Visitors park on level minus two of the Orchard garage."),
            ("parking.txt", b"A second file with the same name."),
        ],
    )
    results = {(f["name"], f["status"]) for f in again["files"]}
    assert results == {
        ("notes.md", "unchanged"),
        ("manual.pdf", "failed"),
        ("parking.txt", "indexed"),
        ("parking.txt", "duplicate"),
    }
    failed = next(f for f in again["files"] if f["status"] == "failed")
    assert failed["error"].startswith("corrupt PDF")
    after = world.chunks("red-ops")
    assert after["notes.md"] == before["notes.md"] and after["manual.pdf"] == before["manual.pdf"]
    assert world.sources("red-ops", "Who services the boiler?")[0] == "manual.pdf"
    assert world.sources("red-ops", "Where do visitors park?")[0] == "parking.txt"


def test_size_and_type_limits(world: World) -> None:
    big_exe = ("tool.exe", b"x" * 1_050_000)  # over the app's 1 MB cap for other routes: this route allows it
    refused = world.upload("bob", "red-handbook", [("ok.md", b"# fine"), big_exe])
    assert refused.status_code == 415, refused.text
    assert "tool.exe" in refused.json()["error"]["message"] and ".pdf" in refused.json()["error"]["message"]
    assert world.upload("bob", "red-handbook", [("noext", b"text")]).status_code == 415
    one_too_big = world.upload("bob", "red-handbook", [("huge.txt", b"a " * 560_000)])
    assert one_too_big.status_code == 413 and "huge.txt" in one_too_big.json()["error"]["message"]
    request_too_big = world.upload("bob", "red-handbook", [(f"p{i}.txt", b"a " * 500_000) for i in range(3)])
    assert request_too_big.status_code == 413
    assert world.upload("bob", "red-handbook", []).status_code == 400
    assert world.upload("bob", "Bad..Name", [("ok.md", b"# fine")]).status_code == 400


def test_write_access(world: World) -> None:
    world.ingest("alice", "red-locked", [("secret.md", b"# Red\n\nThe red vault code is RED-5521.\n")])
    denied = [
        world.upload("carol", "red-locked", [("x.md", b"# hi")]),  # another team's collection
        world.upload("carol", "ghost-never-made", [("x.md", b"# hi")], team="red"),  # a team not hers
        world.upload("erin", "erins-own", [("x.md", b"# hi")]),  # in no team: cannot create either
        world.upload("bob", "default", [("x.md", b"# hi")]),  # the unowned default is the operator's
    ]
    assert [r.status_code for r in denied] == [403, 403, 403, 403]
    names = ["red-locked", "ghost-never-made", "erins-own", "default"]
    messages = {r.json()["error"]["message"].replace(n, "") for r, n in zip(denied, names, strict=True)}
    assert len(messages) == 1  # one message whether the collection exists or not
    with world.client("carol") as client:
        gone = client.delete("/v1/collections/red-locked/documents/secret.md")
    assert gone.status_code == 403
    assert "secret.md" in world.chunks("red-locked")

    several = world.upload("dave", "shared-new", [("x.md", b"# hi")])
    assert several.status_code == 400 and "team" in several.json()["error"]["message"]
    made = world.upload("dave", "blue-new", [("x.md", b"# Blue\n\nBlue notes.")], team="blue")
    assert made.status_code == 202
    assert world.finished("dave", made.json()["id"])["status"] == "done"
    assert world.penny.ledger.collection_owners()["blue-new"] == "blue"
    operator = world.upload("admin", "default", [("welcome.md", b"# Welcome\n\nThe help desk is room 12.")])
    assert operator.status_code == 202
    assert world.finished("admin", operator.json()["id"])["files"][0]["status"] == "indexed"


def test_delete_document(world: World) -> None:
    world.ingest(
        "bob", "red-delete", [("keep.md", b"# Keep\n\nLunch is at noon."), ("drop.md", VACATION.encode())]
    )
    with world.client("alice") as client:
        deleted = client.delete("/v1/collections/red-delete/documents/drop.md")
        assert deleted.status_code == 200 and deleted.json()["deleted_chunks"] > 0
        assert client.delete("/v1/collections/red-delete/documents/drop.md").status_code == 404
        assert client.delete("/v1/collections/red-delete/documents/nothing.md").status_code == 404
    assert set(world.chunks("red-delete")) == {"keep.md"}
    assert "drop.md" not in world.sources("red-delete", "How many days of paid leave?")
