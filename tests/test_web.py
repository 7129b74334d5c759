"""`strata web` in a real headless Chromium (Debian's chromium + chromium-driver through
Selenium) against a real Strata server (SQLite or PostgreSQL, real Lite0, real FAISS):
search by a dropped near-copy, the item page, the probe chart, the label workbench's keys,
a box selection on the WebGL map, uploads, and the app's security (CSRF, token cookie,
upload bound, /healthz). Every page is saved as a screenshot under the pytest tmp dir (and
under $STRATA_WEB_SCREENSHOTS, e.g. docs/web, when set)."""

from __future__ import annotations

import html
import http.client
import json
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from photos import colour_photos, distorted, grey_photos, jpeg, photo, photo_crops
from web_browser import BrowserMissing, WebProcess, browser_errors, chromium, free_port, screenshot

import service.web
from service.client import ImageToAdd, StrataClient
from service.image_files import skip_reason

pytestmark = pytest.mark.timeout(300)

WAIT = 120  # seconds: the 2-core CI machines are shared


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        browser = chromium()
    except BrowserMissing as exc:
        pytest.skip(f"no headless Chromium: {exc}")
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web-screenshots")


@pytest.fixture(scope="module")
def grpc_client(server: Any) -> Iterator[StrataClient]:
    with server.client(timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def photos_collection(grpc_client: StrataClient) -> Iterator[str]:
    """18 skimage photos labelled colour/grey, plus 8 unlabelled crops for the queues."""
    name = f"web-{uuid.uuid4().hex[:8]}"
    grpc_client.create_collection(name)
    images = [
        ImageToAdd(f"skimage/{n}.jpg", jpeg(p), ["colour"]) for n, p in colour_photos().items()
    ]
    images += [ImageToAdd(f"skimage/{n}.jpg", jpeg(p), ["grey"]) for n, p in grey_photos().items()]
    images += [ImageToAdd(uri, data) for uri, data in photo_crops(8)]
    results = list(grpc_client.add_images(name, images))
    assert [r.status for r in results] == ["added"] * len(images), results
    yield name
    grpc_client.delete_collection(name)


@pytest.fixture(scope="module")
def web(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    process = WebProcess(
        server.address, "--max-upload-mb", "1", log_dir=tmp_path_factory.mktemp("web-log")
    )
    with process:
        yield process


def wait_for(driver: Any, script: str, timeout: float = WAIT) -> Any:
    """Poll a JS expression until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: d.execute_script(f"return {script}")
    )


def page(driver: Any, web: WebProcess, path: str) -> None:
    driver.get(web.url(path))
    wait_for(driver, "document.readyState === 'complete'")


def no_js_errors(driver: Any) -> None:
    errors = browser_errors(driver)
    assert not errors, errors


# -- pages ------------------------------------------------------------------------------------


def test_healthz_is_503_until_the_grpc_server_answers(tmp_path: Path) -> None:
    with WebProcess(f"127.0.0.1:{free_port()}", log_dir=tmp_path).start(wait_healthy=False) as w:
        assert w.health() == 503


def test_collections_page_shows_depths_items_and_coverage(
    driver: Any, web: WebProcess, photos_collection: str, shots: Path
) -> None:
    assert web.health() == 200
    page(driver, web, "/")
    row = driver.find_element("css selector", f'tr[data-collection="{photos_collection}"]')
    coverage = row.find_element("css selector", ".coverage")
    assert (coverage.get_attribute("data-human"), coverage.get_attribute("data-none")) == (
        "18",
        "8",
    )
    assert row.find_element("css selector", "td.num").text == "26"
    assert [p.text for p in row.find_elements("css selector", ".pill")] == [
        "edges",
        "parts",
        "semantics",
    ]
    no_js_errors(driver)
    screenshot(driver, "collections", shots)


def test_dropped_near_copy_finds_its_original_first_at_every_depth(
    driver: Any, web: WebProcess, photos_collection: str, shots: Path, tmp_path: Path
) -> None:
    query = tmp_path / "chelsea-edited.jpg"
    query.write_bytes(distorted(photo("chelsea")))
    page(driver, web, f"/collections/{photos_collection}/search")
    driver.find_element("css selector", 'input[type="file"]').send_keys(str(query))
    wait_for(driver, "document.getElementById('results').dataset.state === 'done'")
    columns = driver.find_elements("css selector", "#results [data-depth]")
    assert [c.get_attribute("data-depth") for c in columns] == ["edges", "parts", "semantics"]
    for column in columns:
        uris = [
            h.get_attribute("data-uri") for h in column.find_elements("css selector", "[data-uri]")
        ]
        assert len(uris) == 12, uris
        assert uris[0] == "skimage/chelsea.jpg", (column.get_attribute("data-depth"), uris)
    tags = driver.find_element("id", "tags").text
    assert "ImageNet tags" in tags and "%" in tags
    no_js_errors(driver)
    screenshot(driver, "search", shots)

    # "Search by this result": click the second hit's thumbnail of the deepest column.
    second = columns[-1].find_elements("css selector", "[data-uri]")[1]
    second_uri = second.get_attribute("data-uri")
    second.find_element("css selector", "img.thumb").click()
    wait_for(driver, "location.search.includes('item=')")
    wait_for(driver, "document.getElementById('results').dataset.state === 'done'")
    for column in driver.find_elements("css selector", "#results [data-depth]"):
        first = column.find_element("css selector", "[data-uri]")
        assert first.get_attribute("data-uri") == second_uri


def test_search_filters_restrict_hits_to_the_label(
    driver: Any, web: WebProcess, photos_collection: str, tmp_path: Path
) -> None:
    query = tmp_path / "coffee.jpg"
    query.write_bytes(distorted(photo("coffee")))
    page(driver, web, f"/collections/{photos_collection}/search")
    driver.find_element("css selector", 'input[name="labels"]').send_keys("grey")
    driver.find_element("css selector", 'input[type="file"]').send_keys(str(query))
    wait_for(driver, "document.getElementById('results').dataset.state === 'done'")
    labels = driver.execute_script(
        "return [...document.querySelectorAll('#results [data-uri] .labels')]"
        ".map(e => e.textContent)"
    )
    assert labels and set(labels) == {"grey"}, labels


def test_item_page_shows_labels_neighbours_and_its_place_on_the_map(
    driver: Any, web: WebProcess, photos_collection: str, grpc_client: StrataClient, shots: Path
) -> None:
    hits = grpc_client.search(photos_collection, [jpeg(photo("coffee"))], k=1)[0]
    item_id = hits.results[0].hits[0].id
    page(driver, web, f"/collections/{photos_collection}/items/{item_id}")
    wait_for(driver, "document.getElementById('results').dataset.state === 'done'")
    wait_for(driver, "document.getElementById('map').dataset.points === '26'")
    assert driver.find_element("id", "map").get_attribute("data-found") == "true"
    labels = driver.find_element("id", "item-labels").text
    assert "colour" in labels and "human" in labels
    for column in driver.find_elements("css selector", "#results [data-depth]"):
        assert column.find_element("css selector", "[data-uri]").get_attribute("data-uri") == (
            "skimage/coffee.jpg"
        )
    no_js_errors(driver)
    screenshot(driver, "item", shots)


def test_probe_page_runs_a_probe_and_draws_its_chart(
    driver: Any,
    web: WebProcess,
    photos_collection: str,
    grpc_client: StrataClient,
    shots: Path,
) -> None:
    # One item of a third class: never held out, so nothing is measured for it.
    items = grpc_client.list_items(photos_collection, page_size=1000).items
    lonely = next(i.id for i in items if i.uri.startswith("crop/") and not i.labels)
    grpc_client.set_labels(photos_collection, {lonely: "lonely"})
    try:
        page(driver, web, f"/collections/{photos_collection}/probe")
        driver.find_element("id", "run-probe").click()
        wait_for(driver, "document.getElementById('probe-chart').dataset.state === 'done'", 240)
        bars = driver.find_elements("css selector", "#probe-svg rect[data-metric]")
        assert sorted(
            {(b.get_attribute("data-depth"), b.get_attribute("data-metric")) for b in bars}
        ) == [(d, m) for d in ("edges", "parts", "semantics") for m in ("accuracy", "macro_f1")]
        values = [float(b.get_attribute("data-value")) for b in bars]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert len(driver.find_elements("css selector", "#probe-svg line.chance")) == 3
        # Confusion matrix at the best depth: colour, grey and lonely; the 18 held-out items.
        cells = driver.find_elements("css selector", "#confusion td")
        assert len(cells) == 9 and sum(int(c.text) for c in cells) == 18
        rows = {
            r.find_element("css selector", "td").text: [
                td.text for td in r.find_elements("css selector", "td")[1:]
            ]
            for r in driver.find_elements("css selector", "#per-class tr")[1:]
        }
        assert rows["lonely"] == ["—", "0"], rows
        assert rows["colour"][0] != "—" and int(rows["colour"][1]) > 0, rows
        assert driver.find_element("id", "probe-progress").get_attribute("value") == "3"
        no_js_errors(driver)
        screenshot(driver, "probe", shots)
    finally:
        grpc_client.clear_labels(photos_collection, [lonely])


def _export(server: Any, collection: str) -> list[dict[str, Any]]:
    """`strata labels export --json`, the CLI a user would run."""
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "labels",
            "export",
            "--collection",
            collection,
            "--server",
            server.address,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return list(json.loads(answer.stdout)["labels"])


def test_workbench_number_keys_write_human_labels(
    driver: Any, web: WebProcess, photos_collection: str, server: Any, shots: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page(driver, web, f"/collections/{photos_collection}/labels")
    wait_for(driver, "document.getElementById('suggest-card').dataset.id")
    classes = driver.execute_script(
        "return [...document.querySelectorAll('#suggest-classes li')].map(li => li.dataset.class)"
    )
    assert set(classes[:2]) == {"colour", "grey"}, classes
    labelled = []
    for _ in range(3):
        current = driver.find_element("id", "suggest-card").get_attribute("data-id")
        labelled.append(int(current))
        ActionChains(driver).send_keys("2").perform()
        wait_for(driver, f"document.getElementById('suggest-card').dataset.id !== '{current}'")
    assert len(set(labelled)) == 3
    log = driver.execute_script(
        "return [...document.querySelectorAll('#workbench-log li')].map(li => +li.dataset.id)"
    )
    assert sorted(log) == sorted(labelled)
    screenshot(driver, "labels", shots)
    rows = {
        (r["id"], r["label"]) for r in _export(server, photos_collection) if r["source"] == "human"
    }
    for item_id in labelled:
        assert (item_id, classes[1]) in rows

    # The skip key moves on without writing anything.
    before = driver.find_element("id", "suggest-card").get_attribute("data-id")
    ActionChains(driver).send_keys("s").perform()
    wait_for(driver, f"document.getElementById('suggest-card').dataset.id !== '{before}'")
    human_after = {r["id"] for r in _export(server, photos_collection) if r["source"] == "human"}
    assert int(before) not in human_after
    no_js_errors(driver)


def test_box_selection_on_the_map_labels_exactly_the_selected_items(
    driver: Any,
    web: WebProcess,
    photos_collection: str,
    grpc_client: StrataClient,
    shots: Path,
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page(driver, web, f"/collections/{photos_collection}/map?depth=semantics")
    wait_for(driver, "document.getElementById('map').dataset.points === '26'")
    legend = driver.find_element("id", "legend").text
    assert "colour" in legend and "grey" in legend
    # The unlabelled crops: a "none" entry, shown only when some point has no label.
    assert driver.find_elements("css selector", '#legend li[data-class=""]')
    screenshot(driver, "map", shots)

    # Where the points are, from the gRPC projection and the map's documented initial view
    # (data [-1, 1] fills 95% of the shorter side, centred, y up), not from the page.
    projection = grpc_client.get_projection(photos_collection, depth="semantics")
    ids = np.frombuffer(projection.ids, "<i8")
    xy = np.frombuffer(projection.xy, "<f4").reshape(-1, 2).astype(np.float64)
    overlay = driver.find_element("id", "overlay")
    width, height = driver.execute_script(
        "const c = document.getElementById('overlay'); return [c.clientWidth, c.clientHeight]"
    )
    unit = min(width, height) / 2 * 0.95
    px = width / 2 + xy[:, 0] * unit
    # The leftmost 4 to 8 points, cut at the widest gap so the box edge is unambiguous;
    # the box spans the full height, so only x decides.
    order = np.argsort(px)
    gaps = np.diff(px[order])
    cut = 3 + int(np.argmax(gaps[3:8]))  # select order[: cut + 1]
    chosen = sorted(int(i) for i in ids[order[: cut + 1]])
    right = (px[order[cut]] + px[order[cut + 1]]) / 2
    assert gaps[cut] > 4, "the projection packs points too tightly for a box edge"
    start = (2 - width / 2, 2 - height / 2)  # offsets from the element's centre
    end = (right - width / 2, height - 2 - height / 2)
    driver.find_element("id", "mode-box").click()
    ActionChains(driver).move_to_element_with_offset(
        overlay, *map(int, start)
    ).click_and_hold().move_by_offset(
        int(end[0] - start[0]) // 2, int(end[1] - start[1]) // 2
    ).move_to_element_with_offset(overlay, *map(int, end)).release().perform()
    wait_for(driver, f"document.getElementById('map').dataset.selected === '{len(chosen)}'")
    selected = driver.execute_script(
        "const m = window.strataMap; return m.state.selected.map(i => m.scatter.ids[i])"
    )
    assert sorted(selected) == chosen
    screenshot(driver, "map-selection", shots)

    label = f"boxed-{uuid.uuid4().hex[:6]}"
    driver.find_element("id", "selection-label").send_keys(label)
    driver.find_element("id", "apply-label").click()
    wait_for(driver, f"document.getElementById('map').dataset.labelled === '{len(chosen)}'")
    rows = grpc_client.export_labels(photos_collection, "human").labels
    assert sorted(r.id for r in rows if r.label == label) == chosen

    # Hover shows the thumbnail of the point under the mouse; a click opens its item. The
    # most isolated point, so which one is under the mouse is unambiguous.
    py = height / 2 - xy[:, 1] * unit
    gaps_px = np.hypot(px[:, None] - px[None, :], py[:, None] - py[None, :])
    np.fill_diagonal(gaps_px, np.inf)
    lone = int(np.argmax(gaps_px.min(axis=1)))
    at = (int(px[lone] - width / 2), int(py[lone] - height / 2))
    ActionChains(driver).move_to_element_with_offset(overlay, *at).perform()
    wait_for(driver, "!document.getElementById('hover').hidden")
    hover_image = driver.find_element("css selector", "#hover img")
    assert hover_image.get_attribute("src").endswith(f"/thumbnails/{int(ids[lone])}")
    ActionChains(driver).click().perform()
    wait_for(driver, f"location.pathname.endsWith('/items/{int(ids[lone])}')")
    no_js_errors(driver)


def test_add_images_page_uploads_files_and_lists_failures(
    driver: Any,
    web: WebProcess,
    photos_collection: str,
    grpc_client: StrataClient,
    shots: Path,
    tmp_path: Path,
) -> None:
    good = tmp_path / "fresh-coffee.jpg"
    good.write_bytes(jpeg(photo("coffee").rotate(90, expand=True)))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page(driver, web, f"/collections/{photos_collection}/add")
    assert not driver.find_element("id", "add-skipped-section").is_displayed()
    # Files picked one by one are all sent, as files named to `strata index`: the server
    # says why the broken JPEG and the text file are not images.
    driver.find_element("id", "add-files").send_keys(f"{good}\n{bad}\n{notes}")
    wait_for(driver, "document.getElementById('add-status').dataset.state === 'done'")
    assert driver.find_element("id", "add-progress").get_attribute("value") == "3"
    failures = [li.text for li in driver.find_elements("css selector", "#add-failures li")]
    assert sorted(f.split(":")[0] for f in failures) == ["broken.jpg", "notes.txt"], failures
    # A folder goes by the CLI's rule for folders: the text file is not sent, and the page
    # says why in the CLI's words; a hidden file is nobody's image and is not listed.
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "beach.jpg").write_bytes(jpeg(photo("coffee").rotate(180)))
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    driver.find_element("id", "add-folder").send_keys(str(folder))
    wait_for(driver, "document.getElementById('add-status').dataset.state === 'done'")
    assert driver.find_element("id", "add-progress").get_attribute("value") == "1"
    skipped = [li.text for li in driver.find_elements("css selector", "#add-skipped li")]
    assert skipped == [f"holiday/notes.txt: {skip_reason(notes)}"], skipped
    assert "1 added" in driver.find_element("id", "add-status").text
    assert "1 skipped" in driver.find_element("id", "add-status").text
    screenshot(driver, "add", shots)
    page_of_items = grpc_client.list_items(photos_collection, page_size=1000)
    assert "upload/fresh-coffee.jpg" in {i.uri for i in page_of_items.items}
    assert "upload/broken.jpg" not in {i.uri for i in page_of_items.items}
    assert "upload/notes.txt" not in {i.uri for i in page_of_items.items}
    assert "upload/holiday/beach.jpg" in {i.uri for i in page_of_items.items}


@pytest.mark.database_free
def test_commands_the_web_app_shows_parse_with_the_cli() -> None:
    """A hint on a page is a command someone will paste: each must parse as `strata` does."""
    from service.cli.main import build_parser

    web_root = Path(service.web.__file__).parent
    pages = list((web_root / "templates").glob("*.html"))
    hint = re.compile(r"<code>(strata [^<]+)</code>")
    shown = [html.unescape(m) for p in pages for m in hint.findall(p.read_text())]
    assert shown, "the empty collections page shows how to create and fill one"
    for command in shown:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            raise AssertionError(f"the web app shows {command!r}, which strata rejects") from exc


def test_bulk_tab_labels_a_shift_click_range(
    driver: Any, web: WebProcess, photos_collection: str, grpc_client: StrataClient
) -> None:
    page(driver, web, f"/collections/{photos_collection}/labels?tab=bulk")
    wait_for(driver, "document.querySelectorAll('#bulk-grid .tile').length > 2")
    tiles = driver.find_elements("css selector", "#bulk-grid .tile")
    expected = sorted(int(t.get_attribute("data-id")) for t in tiles[:3])
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    tiles[0].click()
    ActionChains(driver).key_down(Keys.SHIFT).click(tiles[2]).key_up(Keys.SHIFT).perform()
    assert driver.find_element("id", "bulk-count").text == "3"
    assert driver.current_url.endswith("tab=bulk")  # selecting is not "search by this"
    label = f"bulk-{uuid.uuid4().hex[:6]}"
    driver.find_element("id", "bulk-label").send_keys(label)
    driver.find_element("css selector", "#bulk-form button").click()
    wait_for(driver, "document.getElementById('bulk-count').textContent === '0'")
    rows = grpc_client.export_labels(photos_collection, "human").labels
    assert sorted(r.id for r in rows if r.label == label) == expected
    no_js_errors(driver)


def test_duplicates_tab_keeps_the_chosen_image_and_drops_the_others(
    driver: Any, web: WebProcess, photos_collection: str, grpc_client: StrataClient
) -> None:
    copy = jpeg(photo("coffee"), quality=70)
    [added] = grpc_client.add_images(photos_collection, [ImageToAdd("dup/coffee.jpg", copy)])
    original = grpc_client.search(photos_collection, [jpeg(photo("coffee"))], k=1)[0]
    original_id = next(h.id for h in original.results[-1].hits if h.uri == "skimage/coffee.jpg")
    page(driver, web, f"/collections/{photos_collection}/labels?tab=duplicates")
    wait_for(driver, f"document.querySelector('.dup-group figure[data-id=\"{added.id}\"]')")
    group = driver.find_element(
        "xpath", f"//div[contains(@class,'dup-group')][.//figure[@data-id='{added.id}']]"
    )
    members = [
        int(f.get_attribute("data-id")) for f in group.find_elements("css selector", "figure")
    ]
    assert original_id in members
    group.find_element("css selector", f"figure[data-id='{original_id}']").click()
    assert driver.current_url.endswith("tab=duplicates")
    group.find_element("css selector", "button.danger").click()
    wait_for(driver, "document.querySelector('#dup-groups').textContent.includes('kept #')")
    stored = {i.id for i in grpc_client.list_items(photos_collection, page_size=1000).items}
    assert original_id in stored
    assert not (set(members) - {original_id}) & stored
    no_js_errors(driver)


# -- security -----------------------------------------------------------------------------------


def _get(url: str, cookie: str = "") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_writes_need_the_csrf_token_and_uploads_are_bounded(
    web: WebProcess, photos_collection: str, grpc_client: StrataClient
) -> None:
    status, headers, _ = _get(web.url("/"))
    assert status == 200 and "default-src 'self'" in headers["content-security-policy"]
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    token = cookie.split("=", 1)[1]
    item_id = grpc_client.list_items(photos_collection, page_size=1).items[0].id
    url = web.url(f"/api/collections/{photos_collection}/labels")
    body = json.dumps({"ids": [int(item_id)], "label": "csrf-victim"}).encode()
    for headers_sent in ({}, {"Cookie": cookie}, {"Cookie": cookie, "X-CSRF-Token": "forged"}):
        status, answer = _post(url, body, headers_sent)
        assert status == 403 and answer["error"]["code"] == "CSRF"
    status, _ = _post(
        url, body, {"Cookie": cookie, "X-CSRF-Token": token, "Origin": "http://evil.example"}
    )
    assert status == 403
    labels = {r.label for r in grpc_client.export_labels(photos_collection).labels}
    assert "csrf-victim" not in labels

    status, answer = _post(url, body, {"Cookie": cookie, "X-CSRF-Token": token})
    assert status == 200 and answer["labelled"] == [int(item_id)]

    # The app was started with --max-upload-mb 1: refused from the declared length,
    # before the body is read.
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
    connection.putrequest("POST", f"/api/collections/{photos_collection}/images?name=huge.jpg")
    for key, value in {
        "Cookie": cookie,
        "X-CSRF-Token": token,
        "Content-Length": str(1024 * 1024 + 1),
    }.items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"1 MiB" in response.read()
    connection.close()
    upload = web.url(f"/api/collections/{photos_collection}/images?name=evil.jpg")
    # Hostile bytes go through the server's decoder and come back as a named failure.
    status, answer = _post(
        upload.replace("huge", "evil"),
        b"GIF89a" + b"\x00" * 64,
        {"Cookie": cookie, "X-CSRF-Token": token},
    )
    assert status == 200 and answer["status"] == "failed" and answer["error"]["message"]


def test_the_login_form_is_parsed_and_a_wrong_token_is_answered_on_the_form(
    make_server: Any, tmp_path: Path
) -> None:
    """The login form is a plain urlencoded POST: Starlette parses it only with
    python-multipart installed (a dependency of strata). Without it every POST /login was a
    500 page with no `.error` on it, and the browser test below waited for one until it
    timed out."""
    guarded = make_server(write_tokens=("form-test-secret",))
    with WebProcess(guarded.address, log_dir=tmp_path) as w:
        status, headers, body = _get(w.url("/login"))
        assert status == 200
        cookie = headers["set-cookie"].split(";", 1)[0]
        csrf = cookie.split("=", 1)[1]
        assert csrf in body.decode()
        # A token gRPC metadata cannot carry is refused on the form, not sent (it was "the
        # server refused this token (INTERNAL)", which the server never saw).
        for token, expected in (("tök\tx", 400), ("wrong-token", 401), ("form-test-secret", 303)):
            form = urllib.parse.urlencode({"csrf": csrf, "next": "/", "token": token}).encode()
            connection = http.client.HTTPConnection("127.0.0.1", w.port, timeout=120)
            connection.request(
                "POST",
                "/login",
                form,
                {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
            )
            response = connection.getresponse()
            answer = response.read().decode()
            connection.close()
            assert response.status == expected, (response.status, answer[-2000:], w.log())
            if expected == 401:
                assert "The server refused this token (UNAUTHENTICATED)" in answer
            if expected == 400:
                assert "printable ASCII" in answer
        assert "strata_token=form-test-secret" in str(response.getheader("set-cookie"))


def test_a_server_that_wants_a_token_gets_it_from_a_login_form_into_an_httponly_cookie(
    driver: Any, make_server: Any, tmp_path: Path
) -> None:
    guarded = make_server(write_tokens=("web-test-secret",))
    with guarded.client(token="web-test-secret") as c:
        c.create_collection("guarded")
    driver.delete_all_cookies()  # cookies are per host, not per port: start clean
    with WebProcess(guarded.address, log_dir=tmp_path) as w:
        status, _, body = _get(w.url("/api/collections/guarded/labels"))
        assert status == 401 and b"UNAUTHENTICATED" in body
        page(driver, w, "/")
        assert "/login" in driver.current_url
        field = driver.find_element("css selector", 'input[name="token"]')
        field.send_keys("wrong-token")
        driver.find_element("css selector", "form.inline button").click()  # as a person would
        # The answer is the form again with its `.error`, or some other page (the bare 500
        # when python-multipart was missing): wait for either, so a wrong page fails at once
        # and says what it was, instead of a silent 120 s wait for `.error`.
        wait_for(
            driver,
            "document.querySelector('.error') || !document.querySelector('input[name=token]')",
        )
        assert driver.find_elements("css selector", ".error"), (driver.page_source, w.log())
        assert "refused" in driver.find_element("css selector", ".error").text
        field = driver.find_element("css selector", 'input[name="token"]')
        field.send_keys("web-test-secret")
        driver.find_element("css selector", "form.inline button").click()
        wait_for(driver, "document.getElementById('collections') !== null")
        assert "guarded" in driver.find_element("id", "collections").text
        cookie = driver.get_cookie("strata_token")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie").find("web-test-secret") == -1
        driver.find_element("css selector", ".logout button").click()  # "Forget token"
        wait_for(driver, "location.pathname === '/login'")
        assert driver.get_cookie("strata_token") is None
        driver.delete_all_cookies()


def test_over_tls_both_ways_the_cookies_are_secure(make_server: Any, tmp_path: Path) -> None:
    """gRPC over TLS (`--ca`) and the app itself over TLS (`--listen-cert/--listen-key`):
    the CSRF and token cookies then carry the Secure flag."""
    import ssl

    from test_security import make_authority

    authority = make_authority("strata-web-test")
    cert, key = authority.server.write(tmp_path, "server")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(authority.ca.cert)
    guarded = make_server(tls_cert=cert, tls_key=key)
    with WebProcess(
        guarded.address,
        "--ca",
        str(ca),
        "--listen-cert",
        str(cert),
        "--listen-key",
        str(key),
        log_dir=tmp_path,
        https_ca=ca,
    ) as w:
        https = w.url("/")
        assert https.startswith("https://")
        context = ssl.create_default_context(cafile=str(ca))
        with urllib.request.urlopen(https, context=context, timeout=60) as response:
            assert response.status == 200
            cookie = response.headers["set-cookie"]
        assert "strata_csrf=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        with urllib.request.urlopen(https + "healthz", context=context, timeout=60) as response:
            assert response.status == 200


# -- hostile requests, and a server that stops answering ------------------------------------


def _send(
    web: WebProcess,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=120)
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    answer = response.read().decode(errors="replace")
    connection.close()
    return response.status, answer


def test_hostile_requests_get_a_clear_400_or_404_never_a_500(
    web: WebProcess, photos_collection: str
) -> None:
    status, headers, _ = _get(web.url("/"))
    cookie = headers["set-cookie"].split(";", 1)[0]
    writes = {"Cookie": cookie, "X-CSRF-Token": cookie.split("=", 1)[1]}
    api = f"/api/collections/{photos_collection}"
    too_big = str(2**63)
    cases = [
        ("GET", f"/collections/{photos_collection}/items/{too_big}", b"", {}, 400, "out of range"),
        ("GET", f"{api}/thumbnails/{too_big}0", b"", {}, 400, "out of range"),
        ("POST", f"{api}/labels", f'{{"ids":[{too_big}],"label":"x"}}'.encode(), writes, 400,
         "out of range"),
        ("POST", f"{api}/labels", b'{"ids":[true],"label":"x"}', writes, 400, "whole numbers"),
        ("POST", f"{api}/delete", b'{"ids":[false]}', writes, 400, "whole numbers"),
        # JSON escapes can spell a lone surrogate, which no gRPC string carries.
        ("POST", f"{api}/labels", b'{"ids":[1],"label":"\\ud800"}', writes, 400, "Unicode"),
        ("POST", f"{api}/probe", b'{"depth":"\\udfff"}', writes, 400, "Unicode"),
        ("POST", f"{api}/images?name=a.jpg", b"--x\r\n",
         {**writes, "Content-Type": "multipart/form-data; boundary=x"}, 400, "not a form"),
        ("GET", f"/collections/{photos_collection}/map?depth=nope", b"", {}, 400, "not one of"),
        ("GET", f"/collections/{photos_collection}/search?item=abc", b"", {}, 400, "whole number"),
        ("GET", "/no/such/page", b"", {}, 404, "NOT_FOUND"),
        ("GET", "/api/no/such/call", b"", {}, 404, "NOT_FOUND"),
    ]  # fmt: skip
    for method, path, body, headers_sent, expected, words in cases:
        status, answer = _send(web, method, path, body, headers_sent)
        assert (status, words in answer) == (expected, True), (path, status, answer[-600:])
        if path.startswith("/api/"):
            assert set(json.loads(answer)) == {"error"}, answer
        else:
            assert "<html" in answer.lower(), answer[:300]  # the app's own page
    assert "Traceback" not in web.log(), web.log()[-3000:]


def test_a_page_reached_by_a_foreign_host_name_is_refused(web: WebProcess) -> None:
    """DNS rebinding: a site whose name now resolves to 127.0.0.1 reaches the app with its
    own name in Host. On a loopback --listen only loopback names are answered."""
    status, answer = _send(web, "GET", "/", headers={"Host": f"attacker.example:{web.port}"})
    assert status == 400 and json.loads(answer)["error"]["code"] == "HOST"
    assert "--allowed-host attacker.example" in answer
    for name in ("localhost", "127.0.0.1", "[::1]"):
        status, _ = _send(web, "GET", "/", headers={"Host": f"{name}:{web.port}"})
        assert status == 200, name


def test_a_frozen_server_times_calls_out_and_leaves_static_files_and_health_answering(
    serve_process: Any, tmp_path: Path
) -> None:
    """With the gRPC server stopped (SIGSTOP), a page gives up after the app's timeout;
    45 such pages at once used to hold every worker thread, so /static and /healthz hung
    too. Browsers with 20 different tokens meanwhile no longer close each other's calls
    (each token had its own connection, the oldest closed past 16: CANCELLED)."""
    import os
    import signal
    import threading

    frozen = serve_process()
    with WebProcess(frozen.address, "--timeout", "4", log_dir=tmp_path) as w:
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            answers: list[tuple[int, str]] = []

            def load(token: str) -> None:
                answers.append(_send(w, "GET", "/api/collections/none/items",
                                     headers={"Cookie": f"strata_token={token}"}))  # fmt: skip

            threads = [threading.Thread(target=load, args=(f"t{n}",)) for n in range(45)]
            for thread in threads:
                thread.start()
            status, _, css = _get(w.url("/static/app.css"))
            assert status == 200 and css
            assert w.health() == 503
            for thread in threads:
                thread.join(timeout=120)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        codes = sorted({json.loads(answer)["error"]["code"] for _, answer in answers})
        assert len(answers) == 45 and codes == ["DEADLINE_EXCEEDED"], answers[:3]
        status, _, _ = _get(w.url("/"))
        assert status == 200
