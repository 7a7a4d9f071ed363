"""The web chat page in real headless Chromium: ask, see the streamed answer, a source, the tier badge;
rate it, and find the rating in the ledger and in `penny calibrate --from-ledger`'s counts."""

from __future__ import annotations

from pathlib import Path

from assistant.service import Penny
from tests.conftest import REPO
from tests.support.browser import require_chromium
from tests.support.servers import running_server

ARTIFACTS = REPO / "test-artifacts"
pytest_plugins = ["tests.support.browser"]  # fixture: browser
require_chromium()


def test_chat_page_streams_answer_with_sources_and_tier_and_takes_feedback(
    settings, browser, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from assistant.api import create_app
    from assistant.settings import get_settings
    from eval.calibrate_cli import penny_calibrate_command

    penny = Penny(settings)
    assert penny.ingester().ingest([REPO / "samples"]).ok
    with running_server(create_app(settings, penny, auth=False)) as base:
        browser.get(base + "/")
        box = browser.find_element(By.ID, "question")
        assert browser.switch_to.active_element == box  # keyboard-first: the question box has focus
        box.send_keys("In what country is Normandy located?", Keys.ENTER)
        wait = WebDriverWait(browser, 180)
        badge = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=tier-badge]")))
        answer = browser.find_element(By.CSS_SELECTOR, "[data-testid=answer]").text
        browser.find_element(By.CSS_SELECTOR, "details.sources summary").click()
        sources = browser.find_elements(By.CSS_SELECTOR, "[data-testid=source]")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = Path(ARTIFACTS / "web-chat.png")
        browser.save_screenshot(str(shot))
        assert badge.text in {"local", "paid", "cache", "none"}
        # Plain words for what happened; the decision's numbers behind a disclosure.
        summary = browser.find_element(By.CSS_SELECTOR, "[data-testid=summary]").text
        plain = {
            "local": {"answered locally", "answered locally, low confidence"},
            "paid": {"checked with the paid model", "answered by the paid model"},
            "none": {"not in the documents"},
        }
        assert summary in plain.get(badge.text, {summary}) and "p=" not in summary
        assert browser.find_element(By.CSS_SELECTOR, "details.why summary").text == "details"
        browser.find_element(By.CSS_SELECTOR, "details.why summary").click()
        facts = [f.text for f in browser.find_elements(By.CSS_SELECTOR, "[data-testid=why-fact]")]
        assert any(f.startswith("full cost $") and "share of indexing $" in f for f in facts), facts
        evidence = browser.find_elements(By.CSS_SELECTOR, "[data-testid=evidence]")
        assert (badge.text == "none") == (not evidence)  # a served answer shows the sentence it rests on
        assert answer.strip() and not answer.startswith("Error")
        assert sources and "normans.md" in sources[0].text
        assert browser.find_element(By.ID, "session-cost").text.startswith("$")
        assert shot.stat().st_size > 10_000

        # 👎 under the answer: a short thanks, and the rating is in the ledger against this answer.
        feedback = browser.find_element(By.CSS_SELECTOR, "[data-testid=feedback]")
        labels = [b.text for b in feedback.find_elements(By.TAG_NAME, "button")]
        assert labels[:2] == ["👍 Yes", "👎 No"]
        assert labels[2:] == ([] if badge.text == "none" else ["Should have said I don't know"])
        feedback.find_element(By.CSS_SELECTOR, "button[data-rating=down]").click()
        status = browser.find_element(By.CSS_SELECTOR, "[data-testid=feedback-status]")
        wait.until(lambda _: status.text == "Thanks!")
        pressed = feedback.find_element(By.CSS_SELECTOR, "button[aria-pressed=true]")
        assert pressed.get_attribute("data-rating") == "down"
        browser.save_screenshot(str(ARTIFACTS / "web-chat-feedback.png"))
        [rated] = penny.ledger.answer_feedback()
        assert (rated.rating, rated.given_by, rated.tier) == ("down", "owner", badge.text)
        assert penny.ledger.answer(rated.request_id) is not None
        # An error is shown in plain words (here: an answer that is not the caller's).
        failed = browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; const status = document.createElement('span');"
            "sendFeedback('not-an-answer', 'up', [], status).then(() => done(status.textContent));"
        )
        assert failed.startswith("Could not send your feedback: no answer 'not-an-answer' of yours")

    # The click is one of the labels `penny calibrate --from-ledger` counts (too few to refit on).
    monkeypatch.setenv("PENNY_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(penny_calibrate_command, ["--from-ledger"])
    finally:
        get_settings.cache_clear()
    assert result.output.splitlines()[0] == (
        "labels: 0 shadow, 1 feedback (0 up, 1 down, 0 should have said I don't know), 0 synthetic"
    )
    assert result.exit_code == 1 and "not replacing the calibration" in result.output
