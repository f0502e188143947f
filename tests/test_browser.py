"""The HTML report in headless Chromium: verdict and findings visible, filter and search work, no network,
no script from data; a screenshot and a PDF print of each language go to tests/artifacts/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from audit_agent.i18n import translator
from audit_agent.render import RenderOptions, render

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed (CI installs it)")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


class Watched:
    """A page whose every request, console error and dialog is recorded."""

    def __init__(self, browser, javascript: bool = True) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 900}, java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: Path) -> None:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def visible_findings(self) -> int:
        return self.page.locator("#findings article.finding:visible").count()


def write(tmp_path: Path, report, lang: str, name: str) -> Path:
    path = tmp_path / f"{name}.{lang}.html"
    path.write_text(render("html", report, RenderOptions(lang=lang)), encoding="utf-8")
    return path


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_demo_report_in_the_browser(browser, demo_reports, tmp_path, lang):
    report = demo_reports["login-02"]
    t = translator(lang)
    path = write(tmp_path, report, lang, "login-02")
    watched = Watched(browser)
    watched.open(path)
    page = watched.page
    try:
        assert page.locator("html").get_attribute("class") == "js"
        assert page.locator("#verdict .verdict-label").text_content().strip() == t("verdict.non_compliant")
        assert page.locator("#verdict").is_visible()
        total = len(report.open_findings)
        assert total == 3 and watched.visible_findings() == total
        assert page.locator("#finding-controls").is_visible()
        assert page.locator("#finding-count").inner_text() == t("findings.shown", shown=total, total=total)

        page.locator('#finding-controls input[data-severity="critical"]').uncheck()
        assert watched.visible_findings() == total - 1
        page.locator('#finding-controls input[data-severity="critical"]').check()
        page.fill("#finding-search", "crontabs/wangfang")
        assert watched.visible_findings() == 1
        page.fill("#finding-search", "wangfang")
        assert watched.visible_findings() == 2         # the miner and its cron entry, not the host tuning
        page.fill("#finding-search", "no-such-thing-anywhere")
        assert watched.visible_findings() == 0
        page.fill("#finding-search", "")
        assert watched.visible_findings() == total

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / f"report-login-02.{lang}.png"
        pdf = ARTIFACTS / f"report-login-02.{lang}.pdf"
        page.screenshot(path=str(screenshot), full_page=True)
        page.emulate_media(media="print")
        assert not page.locator("#finding-controls").is_visible()     # no interactive controls on paper
        page.pdf(path=str(pdf), format="A4", print_background=True, prefer_css_page_size=True)
        assert screenshot.stat().st_size > 50_000 and pdf.read_bytes().startswith(b"%PDF")
        print(f"\nscreenshot: {screenshot}\nPDF: {pdf}")

        assert watched.requests == [path.as_uri()], watched.requests   # nothing but the file itself
        assert watched.errors == [] and watched.dialogs == []           # no CSP violation, no script error
    finally:
        watched.context.close()


def test_report_reads_in_full_without_javascript(browser, demo_reports, tmp_path):
    report = demo_reports["login-02"]
    path = write(tmp_path, report, "en", "login-02-nojs")
    watched = Watched(browser, javascript=False)
    watched.open(path)
    try:
        assert watched.page.locator("html").get_attribute("class") == "no-js"
        assert watched.visible_findings() == len(report.open_findings)
        assert not watched.page.locator("#finding-controls").is_visible()
        assert watched.page.locator("#declaration").is_visible()
    finally:
        watched.context.close()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_hostile_report_runs_no_script(browser, hostile_report, tmp_path, lang):
    path = write(tmp_path, hostile_report, lang, "hostile")
    watched = Watched(browser)
    watched.open(path)
    page = watched.page
    try:
        page.fill("#finding-search", "script")            # the page's own script runs over hostile text
        page.fill("#finding-search", "")
        assert watched.dialogs == [], watched.dialogs
        assert page.evaluate("document.querySelectorAll('img, iframe, object, embed, svg[onload]').length") == 0
        assert page.evaluate("document.scripts.length") == 1
        assert page.evaluate("[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
                             ".some(a => a.name.startsWith('on'))).length") == 0
        assert page.evaluate("document.title").startswith(translator(lang)("report.title"))   # no OSC retitle
        assert "<script>alert(1)</script>" in page.locator("#findings").inner_text()       # shown as text
        assert watched.requests == [path.as_uri()]
    finally:
        watched.context.close()
