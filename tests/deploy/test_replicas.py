"""Money and limits hold across API replicas (issue #31, item 4), on loopback, without containers.

Two `penny serve` replicas share one PostgreSQL ledger, one Redis, one Chroma server and two remote pool
workers (SmolLM2), as deploy/kubernetes/ runs them; the paid tier is the fake (tests/support/fake_paid.py),
whose received calls are the bill. One stack serves every test; each test checks one claim:

- 200 concurrent requests from 5 users, alternating between the replicas: a budget holds exactly
  (committed <= limit, committed = billed calls x price), an RPM and a TPM limit of N admit at most N
  across both, and no request fails with a 5xx. The load's numbers are printed (``pytest -s``).
- A document uploaded through replica A is answered from by replica B.
- A worker killed mid-load fails no request: its requests are retried on the other worker.
- A replica killed mid-stream leaves its paid call's reservation open; the surviving replica's sweeper
  (``ledger.recover_interval_s``) charges it at the worst case once ``ledger.reservation_ttl_s`` has passed,
  flagged for reconciliation, and the ledger balances.

Every paid question carries ``[user n]`` so the fake's calls can be counted per user.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.ledger import Ledger, PriceTable, Usage
from tests.support.fake_paid import FakePaid, Reply
from tests.support.ledger import PgSchema, books, committed
from tests.support.limits import fresh_redis_prefix
from tests.support.replicas import Stack, checked
from tests.support.servers import released_together, wait_for

RESERVATION_TTL_S = 10  # short, so the mid-stream kill is recovered within the test
BUDGET_USD = "0.0004"  # ~17 of the fake's calls, ~5 paid worst cases
RPM = 10
TPM = 3000  # ~3 paid worst cases (prompt + passages + 64 completion tokens), ~23 settled calls
REQUESTS_PER_USER = 40
LOCAL_REQUESTS = 8  # in flight when a worker is killed
BUDGET_USERS = ("ann", "ben", "cat")
LOAD_USERS = (*BUDGET_USERS, "dan", "eve")
TEAM, COLLECTION = "depot", "handbook"
HANDBOOK = """# Tromsø depot handbook

## Night shift
The night shift at the Tromsø depot is led by Ingrid Halvorsen. It starts at 22:00 and ends at 06:00.

## Snow ploughs
The depot keeps four snow ploughs. Plough number three is reserved for the airport road.
"""
LOCAL_QUESTIONS = (
    "Who leads the night shift at the Tromsø depot?",
    "When does the night shift start?",
    "How many snow ploughs does the depot keep?",
    "Which plough is reserved for the airport road?",
)
TAG = re.compile(r"\[(\w+) \d+\]")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    model_cache: Path,
    tiny_model_path: Path,
    paid_server: tuple[FakePaid, str],
) -> Iterator[Stack]:
    _, paid_url = paid_server
    settings = {
        "LEDGER__RESERVATION_TTL_S": str(RESERVATION_TTL_S),
        "LEDGER__RECOVER_INTERVAL_S": "1",
        # What is checked is correctness, not latency: on a loaded CI machine a queued local answer may wait
        # longer than the production deadline, and its 504 would hide the failures looked for.
        "POOL__REQUEST_DEADLINE_S": "900",
        "SERVER__MAX_QUEUE_WAIT_S": "900",  # and no load shedding: a 503 would hide them too
        "CASCADE__RETRY_LOCAL": "false",  # one generation per local answer: the claims are not about it
    }
    with (
        PgSchema() as db_url,
        fresh_redis_prefix() as prefix,
        Stack(
            tmp_path_factory.mktemp("replicas"),
            model=tiny_model_path,
            model_cache=model_cache,
            db_url=db_url,
            redis_prefix=prefix,
            paid_url=paid_url,
            settings=settings,
        ) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def ledger(stack: Stack) -> Iterator[Ledger]:
    """The replicas' ledger, read from here."""
    opened = Ledger.open(stack.db_url, PriceTable.load(), pool_size=2)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    """Every user's API key, made through the admin API of alternating replicas before any answering."""
    made = {}
    for i, user in enumerate(BUDGET_USERS):
        made[user] = stack.add_user(user, budget_usd=BUDGET_USD, replica=i % 2)
    made["dan"] = stack.add_user("dan", limits={"rpm": RPM}, team=TEAM)
    made["eve"] = stack.add_user("eve", limits={"tpm": TPM}, replica=1)
    made["fay"] = stack.add_user("fay", team=TEAM)
    made["gus"] = stack.add_user("gus", budget_usd="0.01", replica=1)
    return made


def clients(stack: Stack, connections: int = 10) -> list[httpx.Client]:
    """One client per replica, in replica order; slow answers on a loaded machine are waited for."""
    limits = httpx.Limits(max_connections=connections)
    return [httpx.Client(base_url=replica.url, timeout=900, limits=limits) for replica in stack.replicas]


def ask(
    client: httpx.Client, key: str, question: str, profile: str, collection: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"model": profile, "messages": [{"role": "user", "content": question}]}
    if collection:
        body["collection"] = collection
    return client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


# -- a document uploaded through replica A, answered from by replica B ---------------------------------


@pytest.fixture(scope="module")
def handbook(stack: Stack, keys: dict[str, str]) -> dict[str, Any]:
    """The upload job of HANDBOOK into the team's new collection, sent to replica A, followed on B."""
    a, b = (replica.url for replica in stack.replicas)
    auth = {"Authorization": f"Bearer {keys['fay']}"}
    files = [("files", ("handbook.md", HANDBOOK.encode(), "text/markdown"))]
    upload = httpx.post(f"{a}/v1/collections/{COLLECTION}/documents", files=files, headers=auth, timeout=60)
    assert upload.status_code == 202, upload.text
    job_url = f"{b}/v1/jobs/{upload.json()['id']}"  # the job is in the shared ledger
    wait_for(lambda: checked(httpx.get(job_url, headers=auth))["finished_at"] is not None, 600, "the job")
    return checked(httpx.get(job_url, headers=auth))


def test_a_document_uploaded_through_replica_a_is_answered_from_by_replica_b(
    stack: Stack, keys: dict[str, str], handbook: dict[str, Any]
) -> None:
    assert handbook["status"] == "done", handbook
    assert [(f["name"], f["status"]) for f in handbook["files"]] == [("handbook.md", "indexed")]
    with httpx.Client(base_url=stack.replicas[1].url, timeout=900) as b:
        answered = ask(b, keys["fay"], LOCAL_QUESTIONS[0], "penny-local", COLLECTION)
    assert answered.status_code == 200, answered.text
    penny = answered.json()["penny"]
    assert penny["tier"] == "local", penny["reason"]  # retrieval found the passage: the model answered
    assert {source["source"] for source in penny["sources"]} == {"handbook.md"}
    assert any("Halvorsen" in source["text"] for source in penny["sources"])


# -- 200 concurrent requests from 5 users, split across both replicas ----------------------------------


@dataclass
class UserLoad:
    user: str
    profile: str
    limit: str
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # error codes of the refusals
    refused_by: set[int] = field(default_factory=set)  # replicas that answered 429
    billed: int = 0  # calls the fake paid tier received for this user
    billed_tokens: int = 0
    committed: int = 0  # micro-USD: SUM of the user's ledger entries
    open_reservations: int = 0


@dataclass
class Load:
    users: dict[str, UserLoad]
    seconds: float
    price: int  # micro-USD the ledger charges for one of the fake's calls


@pytest.fixture(scope="module")
def load(
    stack: Stack,
    keys: dict[str, str],
    handbook: dict[str, Any],
    paid_server: tuple[FakePaid, str],
    ledger: Ledger,
) -> Load:
    """REQUESTS_PER_USER from each load user, all released at once, each user's alternating replicas;
    then the fake's bill and the ledger's books, per user."""
    fake, _ = paid_server
    fake.reset()
    profiles = {user: "penny-paid" for user in LOAD_USERS} | {"dan": "penny-local"}
    limits = {user: f"budget ${BUDGET_USD}" for user in BUDGET_USERS} | {
        "dan": f"rpm {RPM}",
        "eve": f"tpm {TPM}",
    }
    users = {user: UserLoad(user, profiles[user], limits[user]) for user in LOAD_USERS}
    replicas = clients(stack, connections=len(LOAD_USERS) * REQUESTS_PER_USER)

    def one(user: str, i: int) -> tuple[str, int, httpx.Response]:
        question = f"[{user} {i}] " + (LOCAL_QUESTIONS[i % 4] if user == "dan" else "Where is Normandy?")
        collection = COLLECTION if user == "dan" else None
        return user, i % 2, ask(replicas[i % 2], keys[user], question, profiles[user], collection)

    calls = [partial(one, user, i) for i in range(REQUESTS_PER_USER) for user in LOAD_USERS]
    started = time.monotonic()
    try:
        results = released_together(calls)
    finally:
        for client in replicas:
            client.close()
    seconds = time.monotonic() - started
    for user, replica, response in results:
        row = users[user]
        row.statuses[response.status_code] += 1
        if response.status_code == 429:
            row.codes[response.json()["error"]["code"]] += 1
            row.refused_by.add(replica)
    for seen in fake.requests:
        tagged = TAG.search(str(seen.body["messages"]))
        assert tagged, seen.body
        users[tagged.group(1)].billed += 1
    price = ledger.prices.cost_micro_usd(
        "gpt-4o-mini", Usage(Reply().prompt_tokens, Reply().completion_tokens)
    )
    for row in users.values():
        row.billed_tokens = row.billed * (Reply().prompt_tokens + Reply().completion_tokens)
        _, held, row.committed = books(ledger, ledger.get_user(row.user).id)
        row.open_reservations = sum(state == "open" for state, _, _ in held.values())
    result = Load(users, seconds, price)
    print_load(result)
    return result


def print_load(load: Load) -> None:
    rows = list(load.users.values())
    total = sum((row.statuses for row in rows), Counter())
    print(
        f"\n{sum(total.values())} requests from {len(rows)} users over 2 replicas in {load.seconds:.1f} s: "
        f"{total[200]} answered (200), {total[429]} refused (429), "
        f"{sum(n for status, n in total.items() if status >= 500)} failed (5xx); one paid call "
        f"{load.price} micro-USD"
    )
    print("user  profile      limit           200  429  5xx  billed  committed  billed x price  drift")
    for row in rows:
        fivexx = sum(n for status, n in row.statuses.items() if status >= 500)
        bill = row.billed * load.price
        print(
            f"{row.user:5} {row.profile:12} {row.limit:15} {row.statuses[200]:4} {row.statuses[429]:4} "
            f"{fivexx:4} {row.billed:7} {row.committed:10} {bill:15} {row.committed - bill:6}"
        )


def test_no_request_of_the_load_fails_with_a_5xx(load: Load) -> None:
    for row in load.users.values():
        assert set(row.statuses) <= {200, 429}, (row.user, row.statuses)


def test_a_budget_holds_exactly_across_replicas(load: Load) -> None:
    limit = int(float(BUDGET_USD) * 1_000_000)
    refused_by: set[int] = set()
    for user in BUDGET_USERS:
        row = load.users[user]
        assert row.open_reservations == 0
        assert 0 < row.committed <= limit, row
        assert row.committed == row.billed * load.price, row  # no drift: each call charged exactly once
        assert row.statuses[200] == row.billed  # every answer was one billed call, every refusal none
        assert row.codes == {"insufficient_quota": row.statuses[429]} and row.statuses[429] > 0, row
        refused_by |= row.refused_by
    assert refused_by == {0, 1}  # both replicas refused once the shared budget ran out


def test_an_rpm_limit_of_n_admits_n_across_replicas(load: Load) -> None:
    row = load.users["dan"]
    assert row.statuses == {200: RPM, 429: REQUESTS_PER_USER - RPM}, row.statuses
    assert row.codes == {"rate_limit_exceeded": REQUESTS_PER_USER - RPM}
    assert row.refused_by == {0, 1}
    assert row.billed == 0  # penny-local: never the paid tier


def test_a_tpm_limit_of_n_admits_at_most_n_tokens_across_replicas(load: Load) -> None:
    row = load.users["eve"]
    assert row.statuses[200] == row.billed > 0
    assert row.billed_tokens <= TPM, row
    assert row.codes == {"rate_limit_exceeded": row.statuses[429]} and row.statuses[429] > 0, row
    assert row.refused_by == {0, 1}


# -- failures --------------------------------------------------------------------------------------


def on_worker(stack: Stack, url: str) -> list[dict[str, Any]]:
    """The worker at ``url`` as each replica's pool sees it (GET /v1/pool): state, in_flight, ..."""
    seen = []
    for i in range(len(stack.replicas)):
        with stack.admin(i) as admin:
            seen += [w for w in checked(admin.get("/v1/pool"))["workers"] if w["url"] == url]
    return seen


def test_a_worker_killed_mid_load_fails_no_request(
    stack: Stack, keys: dict[str, str], handbook: dict[str, Any]
) -> None:
    victim = stack.workers[0]
    replicas = clients(stack)
    results: list[httpx.Response] = []

    def local_load() -> None:
        calls = [
            partial(
                ask,
                replicas[i % 2],
                keys["fay"],
                f"{LOCAL_QUESTIONS[i % 4]} ({i})",
                "penny-local",
                COLLECTION,
            )
            for i in range(LOCAL_REQUESTS)
        ]
        results.extend(released_together(calls))

    runner = threading.Thread(target=local_load)
    runner.start()
    try:
        wait_for(lambda: any(w["in_flight"] for w in on_worker(stack, victim.url)), 120, "a request on it")
        victim.kill()
    finally:
        runner.join()
        for client in replicas:
            client.close()
    statuses = Counter(response.status_code for response in results)
    assert statuses == {200: LOCAL_REQUESTS}, [r.text for r in results if r.status_code != 200]
    assert all(r.json()["penny"]["tier"] == "local" for r in results)
    # A request was on the worker when it died (the replica logs it, then retries on the other worker).
    failed_on_victim = f"request to {victim.url} failed"
    assert any(failed_on_victim in replica.log.read_text(errors="replace") for replica in stack.replicas)
    victim.start()  # the pod comes back on the same address and rejoins both replicas' rotation
    victim.wait_ready()
    back = ["ready"] * len(stack.replicas)
    wait_for(lambda: [w["state"] for w in on_worker(stack, victim.url)] == back, 60, "it back in rotation")


def test_a_replica_killed_mid_stream_leaves_no_reservation_held_after_recovery(
    stack: Stack, keys: dict[str, str], paid_server: tuple[FakePaid, str], ledger: Ledger
) -> None:
    fake, _ = paid_server
    fake.reset()
    fake.queue(Reply(text=" ".join(f"word{i}" for i in range(100)), chunk_delay_s=0.2))
    gus = ledger.authenticate(keys["gus"])
    assert gus is not None
    victim, request_id = stack.replicas[1], "killed-mid-stream"
    body = {
        "model": "penny-paid",
        "stream": True,
        "messages": [{"role": "user", "content": "[gus 0] Where is Normandy?"}],
    }
    headers = {"Authorization": f"Bearer {keys['gus']}", "x-request-id": request_id}
    url = f"{victim.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=900) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if "word0" in line:
                break  # the paid answer is streaming
        held = books(ledger, gus.user_id)[1]
        assert held[request_id][0] == "open"  # reserved and sent, not settled
        victim.kill()

    def resolved() -> bool:
        return books(ledger, gus.user_id)[1][request_id][0] != "open"

    wait_for(resolved, RESERVATION_TTL_S + 60, "the surviving replica to recover the reservation")
    _, held, total = books(ledger, gus.user_id)
    state, worst, cost = held[request_id]
    assert (state, cost) == ("settled", worst)  # sent, so maybe spent: charged the worst case
    assert request_id in ledger.needing_reconciliation()
    assert [r for r, (s, _, _) in books(ledger)[1].items() if s == "open"] == []  # nothing held anywhere
    assert ledger.check_balances() == []
    status = ledger.budget_status(gus)
    assert status is not None and status.committed_micro_usd == total == committed(held) == worst
    billed = sum("[gus " in str(seen.body["messages"]) for seen in fake.requests)
    price = ledger.prices.cost_micro_usd(
        "gpt-4o-mini", Usage(Reply().prompt_tokens, Reply().completion_tokens)
    )
    assert billed == 1
    print(
        f"\nreplica killed mid-stream: reservation {state} at the worst case {worst} micro-USD after "
        f"recovery; billed 1 x {price}; drift {total - billed * price} micro-USD, flagged for "
        "reconciliation; open reservations 0; check_balances clean"
    )
