"""The design report as a person sees it: rendered by headless Chromium at 1280 px.

Chromium's own ``--dump-dom`` (the DOM after load, with what the report's measuring script
wrote into ``<html data-measure=...>``) and ``--screenshot``; no Playwright, no network. CI
installs Debian's ``chromium``; where it is missing the test is skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

from archlab.report.document import RUN_SECTIONS, SECTIONS, build_report
from archlab.report.output import write_report

WIDTH = 1280


def _chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("chromium is missing (apt-get install chromium); the browser test needs it")


def _run(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={WIDTH},2000",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    exe = _chromium()
    tmp = tmp_path_factory.mktemp("browser")
    # a convolutional model: a real diagram and nested blocks; a long name stresses the layout
    rep = build_report("cnn_digits", bench=False, deploy=False)
    html = write_report(rep, tmp / "report.html")
    dom = _run(exe, tmp, "--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / "shot.png"
    res = _run(exe, tmp, f"--screenshot={shot}", html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    return dom.stdout, shot


def _measure(dom: str) -> dict[str, int]:
    m = re.search(r'data-measure="report-ok ([^"]*)"', dom)
    assert m, "the measuring script did not run: " + dom[:300]
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def test_every_section_is_in_the_rendered_dom(page):
    dom, _ = page
    for sid, heading in SECTIONS.items():
        assert re.search(rf'<section id="{sid}"><h2>{re.escape(heading)}</h2>', dom), sid
    for sid in RUN_SECTIONS:
        assert f'<section id="{sid}">' not in dom  # a registry name has no run sections


def test_no_horizontal_overflow_no_errors_and_a_visible_diagram(page):
    measure = _measure(page[0])
    assert 0 < measure["sw"] <= WIDTH, measure
    assert measure["dw"] > 0, measure
    assert measure["errors"] == 0, measure
    assert measure["sections"] == len(SECTIONS) and measure["hidden"] == 0, measure


def test_screenshot_is_a_real_picture(page):
    _, shot = page
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (WIDTH, 2000)
