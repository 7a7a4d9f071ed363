"""The operator CLI: users, keys, budgets, usage and reconciliation, through click on both backends."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assistant.cli import cli
from assistant.ledger import Ledger, PriceTable, Usage
from assistant.settings import get_settings

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


@pytest.fixture
def penny(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PENNY_LEDGER__DB_URL", ledger_url)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    yield run
    get_settings.cache_clear()


def test_users_keys_budgets_and_usage(penny, ledger_url: str, prices: PriceTable) -> None:  # type: ignore[no-untyped-def]
    out = penny("users", "add", "alice", "--budget-usd", "5", "--window", "day").output
    assert "added user alice" in out and "$5.00 per day" in out
    assert "already exists" in penny("users", "add", "alice", ok=False).output
    assert (
        "--budget-usd: 'lots' is not a number"
        in penny("users", "add", "bob", "--budget-usd", "lots", ok=False).output
    )
    assert "bob" not in penny("users", "list").output  # a bad budget creates nothing

    created = penny("keys", "create", "alice").output.splitlines()
    key = created[-1]
    key_id = created[0].split()[1]
    assert key.startswith("pny_") and key_id.startswith("key_")
    listing = penny("keys", "list").output
    assert key_id in listing and key not in listing and "active" in listing
    assert "no user 'nobody'" in penny("keys", "create", "nobody", ok=False).output

    out = penny("budget", "set", "alice", "--usd", "0.25", "--window", "month").output
    assert "$0.25 per month" in out

    # Some spend, as the service would record it.
    ledger = Ledger.open(ledger_url, prices)
    alice = ledger.authenticate(key)
    assert alice is not None
    for number, completion in enumerate((100, 300)):
        reservation = ledger.reserve(
            request_id=f"r{number}",
            principal=alice,
            model="gpt-4o-mini",
            prompt_tokens=1000,
            max_completion_tokens=500,
        )
        ledger.mark_sent(reservation)
        ledger.settle(reservation, Usage(1000, completion))
    ledger.close()

    table = penny("usage", "--by", "model").output
    assert "gpt-4o-mini" in table and "$0.00054" in table  # 2 x 150 + 400 x 0.6 = 540 micro-USD
    rows = list(csv.DictReader(io.StringIO(penny("usage", "--user", "alice", "--csv").output)))
    assert rows == [
        {
            "USER": "alice",
            "REQUESTS": "2",
            "PROMPT": "2000",
            "CACHED": "0",
            "COMPLETION": "400",
            "COST_USD": "0.000540",
            # settled without answers: nothing to count savings on, and no answer of unknown savings
            "PAID_ONLY_USD": "",
            "SAVED_USD": "",
            "SAVED_%": "",
            "UNKNOWN": "0",
        }
    ]
    assert "not a date" in penny("usage", "--since", "yesterday", ok=False).output

    out = penny("keys", "revoke", key_id).output
    assert "revoked" in out
    assert "revoked" in penny("keys", "list").output
    ledger = Ledger.open(ledger_url, prices)
    assert ledger.authenticate(key) is None
    ledger.close()


def test_reconcile_reports_differences(penny, ledger_url: str, prices: PriceTable, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    penny("users", "add", "carol")
    ledger = Ledger.open(ledger_url, prices)
    carol = ledger.authenticate(ledger.create_key("carol")[1])
    assert carol is not None
    reservation = ledger.reserve(
        request_id="c1",
        principal=carol,
        model="gpt-4o-mini",
        prompt_tokens=10_000,
        max_completion_tokens=1000,
    )
    ledger.mark_sent(reservation)
    ledger.settle(reservation, Usage(10_000, 1000))  # 1500 + 600 = 2100 micro-USD
    today = ledger.clock().date().isoformat()
    ledger.close()

    export = tmp_path / "usage.csv"
    export.write_text(
        "date,model,input_tokens,output_tokens,cost_usd\n"
        f"{today},gpt-4o-mini-2024-07-18,10000,1000,0.0021\n"  # the snapshot name maps to gpt-4o-mini
        f"{today},gpt-4o,500,50,0.00175\n",  # a call the ledger never saw
        "utf-8",
    )
    result = penny("usage", "reconcile", str(export), ok=False)
    assert result.exit_code == 1, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith(today)}
    assert lines["gpt-4o-mini"].endswith("ok")
    assert "missing in ledger" in lines["gpt-4o"]
    assert "1 ok, 1 to check" in result.output

    export.write_text("day,model\n", "utf-8")
    assert "missing column" in penny("usage", "reconcile", str(export), ok=False).output


def test_the_cli_reads_windows_and_groupings_without_loading_the_database_layer() -> None:
    """``penny --help`` imports the ledger package for its choices; SQLAlchemy comes with ``Ledger`` only."""
    code = (
        "import sys, assistant.cli; print('sqlalchemy' in sys.modules); "
        "from assistant.ledger import Ledger; print('sqlalchemy' in sys.modules, Ledger.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "assistant.ledger.ledger"]
