"""The spend dashboard in real headless Chromium: it renders the numbers `penny usage` prints for the same
ledger (total spend, paid-only, saved and its share, each user's spend), the chart, and a budget heading
past its limit in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assistant.cli import cli
from assistant.ledger import Ledger, PriceTable
from assistant.settings import get_settings
from tests.api.test_dashboard_http import ADMIN_KEY, make_app
from tests.conftest import REPO
from tests.ledger.test_savings import small_ledger
from tests.support.browser import require_chromium
from tests.support.servers import running_server

pytest_plugins = ["tests.support.browser"]  # fixture: browser
require_chromium()

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def ledger_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Ledger, CliRunner]]:
    """One SQLite ledger for the server and for `penny usage`."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PENNY_LEDGER__DB_URL", url)
    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    get_settings.cache_clear()
    ledger = Ledger.open(url, PriceTable.load())
    yield ledger, CliRunner()
    ledger.close()
    get_settings.cache_clear()


def penny_usage(runner: CliRunner, by: str = "user") -> dict[str, list[str]]:
    """`penny usage --by BY` as {first cell: its cells}."""
    result = runner.invoke(cli, ["usage", "--by", by], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {line.split()[0]: line.split() for line in result.output.splitlines()[1:] if line.strip()}


def test_the_dashboard_shows_what_penny_usage_prints(
    ledger_db: tuple[Ledger, CliRunner], browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ledger, runner = ledger_db
    small_ledger(ledger)
    ledger.set_budget("bob", 100_000, "month")
    printed = penny_usage(runner)
    owned = penny_usage(runner, "collection")  # ... TOTAL_USD last: the cost of ownership
    # USER REQUESTS PROMPT CACHED COMPLETION COST_USD PAID_ONLY_USD SAVED_USD SAVED_% UNKNOWN
    total = printed["TOTAL"]
    cost, paid_only, saved, percent = total[-5], total[-4], total[-3], total[-2]

    with running_server(make_app(ledger)) as base:
        browser.get(base + "/dashboard")
        browser.find_element(By.ID, "api-key").send_keys(ADMIN_KEY)
        browser.find_element(By.ID, "load").click()
        wait = WebDriverWait(browser, 60)
        wait.until(ec.visibility_of_element_located((By.ID, "report")))

        def shown(testid: str) -> str:
            return browser.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]").text

        assert (shown("total-cost"), shown("total-paid-only")) == (cost, paid_only)
        assert (shown("total-saved"), shown("total-saved-percent")) == (saved, percent)
        assert (shown("total-answers"), shown("escalation-rate")) == ("4", "25.0%")
        rows = browser.find_elements(By.CSS_SELECTOR, "[data-testid=top-users] tbody tr")
        users = {cells[0]: cells for cells in (row.text.split() for row in rows)}
        assert set(users) == {"alice", "bob"}
        for name, cells in users.items():
            assert cells[2] == printed[name][5]  # each user's cost, as `penny usage` prints it
            assert cells[3] == printed[name][7]  # and what it saved
        collections = browser.find_elements(By.CSS_SELECTOR, "[data-testid=top-collections] tbody tr")
        for row in collections:
            cells = row.text.split()
            assert cells[-1] == owned[cells[0]][-1]  # its cost of ownership, as `penny usage` prints it
        assert collections and shown("cost-of-ownership") == owned["TOTAL"][-1]
        assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=chart] svg")
        budget = browser.find_element(By.CSS_SELECTOR, "[data-testid=budgets] tbody tr").text
        assert budget.startswith("user bob (month)") and "heading past it: $0.109412" in budget
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        # A key that may not see it gets the reason in plain words, and no numbers.
        browser.find_element(By.ID, "api-key").clear()
        browser.find_element(By.ID, "api-key").send_keys(ledger.create_key("alice")[1])
        browser.find_element(By.ID, "load").click()
        wait.until(lambda _: "Could not load" in browser.find_element(By.ID, "status").text)
        assert "team admins" in browser.find_element(By.ID, "status").text
        assert not browser.find_element(By.ID, "report").is_displayed()
