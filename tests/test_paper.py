"""The filed report on A4 paper, printed by headless Chromium: short, every page named, nothing stranded.

Each demo host in both languages, and a report of this very host, is printed to PDF; the pages are read
back with poppler (pdfinfo, pdftotext, pdftoppm). The pages are saved as PNG under tests/artifacts/ for a
person to look at.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from audit_agent.i18n import translator
from audit_agent.render import RenderOptions, render
from audit_agent.render.view import report_id

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LIMITS = {"cn-117": 3, "gpu-lab-03": 6, "login-02": 6}     # compliant: 3 pages; up to three findings: 6
MIN_FILL = 0.25             # every page but the last carries at least a quarter page of content

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed (CI installs it)"),
              pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils is not installed")]


@pytest.fixture(scope="module")
def printer():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context()
        page = context.new_page()

        def to_pdf(html: Path, pdf: Path) -> Path:
            page.goto(html.as_uri())
            page.emulate_media(media="print")
            page.pdf(path=str(pdf), format="A4", print_background=True, prefer_css_page_size=True)
            return pdf
        yield to_pdf
        context.close()
        browser.close()


def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


def page_text(pdf: Path, number: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(number), "-l", str(number), str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout


def fill(pgm: Path) -> float:
    """How far down the page's body the content reaches (0..1), between the running header and the margin."""
    data = pgm.read_bytes()
    magic, width, height, depth, pixels = re.match(rb"(P5)\s+(\d+)\s+(\d+)\s+(\d+)\s(.*)", data, re.S).groups()
    width, height = int(width), int(height)
    top, bottom = int(height * 0.075), int(height * 0.94)     # below the running header, above the bottom margin
    for y in range(bottom - 1, top, -1):
        row = pixels[y * width:(y + 1) * width]
        if min(row) < 200:
            return (y - top) / (bottom - top)
    return 0.0


def pages_as_images(pdf: Path, stem: str) -> list[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob(f"{stem}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(ARTIFACTS / stem)], check=True)
    return sorted(ARTIFACTS.glob(f"{stem}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def check_paper(pdf: Path, report, lang: str, stem: str) -> int:   # noqa: ANN001
    """Running header on every page, no heading at a page's end, no near-empty page, sign-off not alone."""
    t = translator(lang)
    pages = page_count(pdf)
    short_id = report_id(report)
    headings = [t(key) for key in ("header.section", "inventory.section", "checks.section", "findings.section",
                                   "registered.section", "load.section", "basis.section", "references.section",
                                   "declaration.section", "registered.filings", "registered.workloads",
                                   "registered.allowlisted", "inventory.gpus")]
    signoff_pages = []
    for number in range(1, pages + 1):
        text = page_text(pdf, number)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        assert report.host.hostname in lines[0] and short_id in lines[0], (stem, number, lines[:2])
        assert t("report.page_of", page=number, pages=pages).replace(" ", "") in lines[0].replace(" ", ""), lines[0]
        body = lines[1:]
        assert body, f"{stem}: page {number} is empty"
        assert body[-1] not in headings, f"{stem}: page {number} ends with the heading {body[-1]!r}"
        if t("declaration.section") in body:
            signoff_pages.append(number)
            others = [h for h in headings if h in body and h != t("declaration.section")]
            assert others or len(body) > 25, f"{stem}: the sign-off is alone on page {number}"
    assert len(signoff_pages) == 1
    assert len(pages_as_images(pdf, stem)) == pages          # PNGs for a person to look at
    grey = pdf.with_suffix("")
    subprocess.run(["pdftoppm", "-r", "30", "-gray", str(pdf), str(grey)], check=True)
    maps = sorted(grey.parent.glob(f"{grey.name}-*.pgm"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    for number, image in enumerate(maps[:-1], start=1):
        assert fill(image) >= MIN_FILL, f"{stem}: page {number} holds under a quarter page ({fill(image):.2f})"
    for image in maps:
        image.unlink()
    return pages


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("name", sorted(LIMITS))
def test_demo_report_on_a4(printer, demo_reports, tmp_path, name, lang):
    report = demo_reports[name]
    html = tmp_path / f"{name}.{lang}.html"
    html.write_text(render("html", report, RenderOptions(lang=lang)), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = printer(html, ARTIFACTS / f"paper-{name}.{lang}.pdf")
    pages = check_paper(pdf, report, lang, f"paper-{name}.{lang}")
    print(f"\n{name} {lang}: {pages} A4 pages ({pdf})")
    assert pages <= LIMITS[name], f"{name} ({lang}) prints on {pages} pages, more than {LIMITS[name]}"


@pytest.mark.e2e
def test_live_report_on_a4(printer, agent, tmp_path):
    """This host, as it is (other people's test processes included): every page named, nothing stranded."""
    from audit_agent.model import AuditReport
    saved = tmp_path / "live.json"
    result = agent("scan", "--quiet", "--window", "0.5", "--fail-on", "never", "--json", str(saved), timeout=300)
    assert result.returncode == 0, result.stderr
    report = AuditReport.from_dict(json.loads(saved.read_text(encoding="utf-8")))
    for lang in ("en", "zh-CN"):
        html = tmp_path / f"live.{lang}.html"
        assert agent("report", str(saved), "--html", str(html), "--lang", lang).returncode == 0
        pdf = printer(html, ARTIFACTS / f"paper-live.{lang}.pdf")
        pages = check_paper(pdf, report, lang, f"paper-live.{lang}")
        print(f"\nlive {lang}: {pages} A4 pages, {len(report.open_findings)} counted findings")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_fleet_report_on_a4_never_leaves_the_sign_off_alone(printer, demo_reports, tmp_path, lang):
    """The fleet page an institution signs: its sign-off shares its page with the end of the host table."""
    import time

    from audit_agent.fleet import merge
    from audit_agent.fleet_html import render_html
    from audit_agent.i18n import translator
    from audit_agent.render.json_report import dumps
    reports = tmp_path / "reports"
    reports.mkdir()
    for name, report in demo_reports.items():
        (reports / f"{name}.json").write_text(dumps(report.to_dict()), encoding="utf-8")
    fleet = merge([str(reports)], stale_days=100000)
    html = tmp_path / f"fleet.{lang}.html"
    html.write_text(render_html(fleet, lang, tmp_path), encoding="utf-8")
    pdf = printer(html, ARTIFACTS / f"paper-fleet.{lang}.pdf")
    pages = page_count(pdf)
    pages_as_images(pdf, f"paper-fleet.{lang}")
    heading = translator(lang)("declaration.section")
    with_sign_off = [n for n in range(1, pages + 1) if heading in page_text(pdf, n).replace(" ", "")
                     or heading in page_text(pdf, n)]
    assert with_sign_off, f"no page carries {heading!r}"
    last = page_text(pdf, with_sign_off[-1])
    before = last.split(heading, 1)[0] if heading in last else ""
    assert len([line for line in before.splitlines() if line.strip()]) >= 3, \
        "the sign-off page carries the end of the host table too, not the sign-off alone"
    print(f"\nfleet {lang}: {pages} A4 pages ({pdf}), {time.strftime('%Y-%m-%d')}")
