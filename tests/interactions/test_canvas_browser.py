"""The canvas in a real browser: build, save, activate, run and watch an interaction.

Playwright drives Debian's Chromium (`/usr/bin/chromium`, installed by scripts/run-tests; no
browser download) against the ASGI server (`config.asgi` under uvicorn) and real Celery
workers, logged in to the admin like a person. Elements are found only by their `data-testid`
(docs/ui.md). The screenshots in docs/images/ are written by these tests.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

from accounts.models import User
from interactions.models import Interaction, Session
from tests.asgi_server import AsgiServer
from tests.http_server import LocalHttpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = os.environ.get("JUNCTION_TEST_CHROMIUM", "/usr/bin/chromium")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PASSWORD = "canvas-builder-password"
BRANCH_SECONDS = 0.8  # each branch's HTTP call takes this long, so the two visibly overlap

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM}: scripts/run-tests installs Debian's chromium package",
                allow_module_level=True)


@pytest.fixture
def server(celery_workers):
    server = AsgiServer().start()
    yield server
    server.stop()


@pytest.fixture
def slow_http():
    http = LocalHttpServer().start()
    yield http
    http.stop()


@pytest.fixture
def page(server, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous (Django's documented switch for such callers).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=server.base_url)
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        # The last state of the page, for a failure's post-mortem (beside the workers' logs).
        log_dir = Path(os.environ.get("JUNCTION_TEST_LOG_DIR", "/tmp/junction-test-workers"))
        log_dir.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(log_dir / "canvas-browser-last.png"), full_page=True)
        browser.close()
        # The test's ORM calls ran beside Playwright's loop, on a connection of their own.
        connections.close_all()
        assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def builder(transactional_db) -> User:
    return User.objects.create_superuser(username="builder", email="builder@example.com", password=PASSWORD)


def log_in(page, user: User) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def by_id(page, testid: str):
    return page.get_by_test_id(testid)


def drop_task(page, task_type: str, name: str, x: float, y: float) -> None:
    """Drag a task type from the palette to (x, y), as fractions of the canvas's size, and name it."""
    flow = by_id(page, "canvas-flow")
    size = flow.bounding_box()
    by_id(page, f"palette-{task_type}").drag_to(flow, target_position={"x": x * size["width"], "y": y * size["height"]})
    name_input = by_id(page, "task-name-input")
    name_input.fill(name)
    name_input.press("Enter")
    sync_api.expect(by_id(page, f"node-{name}")).to_be_visible()


def connect(page, source: str, target: str) -> None:
    """Drag from the source task's bottom handle to the target task's top handle."""
    start = by_id(page, f"handle-out-{source}").bounding_box()
    end = by_id(page, f"handle-in-{target}").bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()


def select(page, name: str) -> None:
    by_id(page, f"node-{name}").click()
    sync_api.expect(by_id(page, "task-name-input")).to_have_value(name)


def set_fixed(page, task: str, field: str, value: str) -> None:
    by_id(page, f"field-mode-{task}-{field}").select_option("fixed")
    by_id(page, f"field-{task}-{field}").fill(value)


def test_build_the_diamond_run_it_and_watch_it(page, builder, slow_http):
    expect = sync_api.expect
    log_in(page, builder)
    page.goto("/admin/interactions/interaction/add/")
    page.select_option("#id_user", str(builder.pk))
    page.fill("#id_name", "diamond")
    expect(by_id(page, "canvas")).to_be_visible()
    expect(by_id(page, "palette-transform")).to_be_visible()

    # Four tasks dragged in from the palette, named in the side panel.
    slow = slow_http.url(f"/slow/{BRANCH_SECONDS}")
    drop_task(page, "transform", "start", 0.5, 0.1)
    by_id(page, "field-mode-start-data").select_option("blank")  # the caller fills it
    set_fixed(page, "start", "expression", "a[")  # a bad expression, caught on save
    expect(by_id(page, "field-check-start-expression")).to_contain_text("Invalid JMESPath")
    drop_task(page, "http_request", "left", 0.24, 0.45)
    set_fixed(page, "left", "url", slow)
    drop_task(page, "http_request", "right", 0.76, 0.45)
    set_fixed(page, "right", "url", slow)
    by_id(page, "retries-right").fill("99")  # past the maximum, caught on save
    drop_task(page, "transform", "join", 0.5, 0.8)

    # Links by dragging; a link that would close a cycle is refused.
    for source, target in [("start", "left"), ("start", "right"), ("left", "join"), ("right", "join")]:
        connect(page, source, target)
        expect(by_id(page, f"edge-{source}-{target}")).to_have_attribute("data-condition", "completed")
    connect(page, "join", "start")
    expect(by_id(page, "edge-join-start")).to_have_count(0)

    # The cog on left -> join: run join whether left completed or failed.
    by_id(page, "edge-cog-left-join").click()
    by_id(page, "edge-condition-left-join-both").click()
    expect(by_id(page, "edge-left-join")).to_have_attribute("data-condition", "completed,failed")
    expect(by_id(page, "edge-label-left-join")).to_have_text("completed | failed")

    # join's data is a reference to an earlier task, checked as it is typed.
    select(page, "join")
    by_id(page, "field-mode-join-data").select_option("reference")
    by_id(page, "field-ref-task-join-data").select_option("start")
    by_id(page, "field-join-data").fill("order.id[")
    expect(by_id(page, "field-ref-check-join-data")).to_have_attribute("data-valid", "false")
    by_id(page, "field-join-data").fill("order")
    expect(by_id(page, "field-ref-check-join-data")).to_have_attribute("data-valid", "true")
    set_fixed(page, "join", "expression", "@")
    page.screenshot(path=str(IMAGES / "canvas-editor.png"))

    # Saving validates on the server; each error is shown on the task and field it names.
    by_id(page, "save").click()
    expect(by_id(page, "node-errors-start")).to_be_visible()
    expect(by_id(page, "node-errors-right")).to_be_visible()
    assert not Interaction.objects.filter(name="diamond").exists()
    select(page, "start")
    expect(by_id(page, "field-error-start-expression")).to_be_visible()
    by_id(page, "canvas").screenshot(path=str(IMAGES / "canvas-errors.png"))
    set_fixed(page, "start", "expression", "@")
    select(page, "right")
    expect(by_id(page, "task-errors-right")).to_contain_text("retries")
    by_id(page, "retries-right").fill("1")
    by_id(page, "save").click()
    page.wait_for_url("**/change/")

    # What was saved is exactly the definition format, with the positions beside it.
    interaction = Interaction.objects.get(name="diamond")
    version = interaction.current_version
    assert version.tasks == {
        "start": {"type": "transform", "body": {"data": None, "expression": "@"}},
        "left": {"type": "http_request", "body": {"url": slow}, "execute_after": {"start": ["completed"]}},
        "right": {"type": "http_request", "body": {"url": slow}, "execute_after": {"start": ["completed"]},
                  "retries": 1},
        "join": {"type": "transform", "body": {"data": {"$ref": "start.order"}, "expression": "@"},
                 "execute_after": {"left": ["completed", "failed"], "right": ["completed"]}},
    }
    assert set(version.layout) == {"start", "left", "right", "join"}
    assert version.layout["left"]["x"] < version.layout["start"]["x"] < version.layout["right"]["x"]

    # The endpoint panel: activate, fill the blank, run, and follow the session.
    panel = by_id(page, "endpoint-panel")
    expect(by_id(page, "endpoint-body")).to_contain_text('"start"')
    expect(by_id(page, "endpoint-curl")).to_contain_text(f"/api/interactions/{interaction.pk}/run/")
    expect(by_id(page, "run-button")).to_be_disabled()
    by_id(page, "activate-button").click()
    expect(by_id(page, "endpoint-status")).to_have_text("active")
    by_id(page, "run-input-start-data").fill('{"order": {"id": 42}}')
    by_id(page, "run-button").click()
    expect(panel.get_by_test_id("session-status")).to_have_text("completed", timeout=30_000)
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(IMAGES / "endpoint-panel.png"))

    # The session viewer: every task green, the two branches side by side on the timeline.
    session = Session.objects.get(interaction=interaction)
    by_id(page, "open-session").click()
    page.wait_for_url(f"**/admin/interactions/session/{session.pk}/change/")
    for name in ("start", "left", "right", "join"):
        expect(by_id(page, f"session-task-{name}")).to_have_attribute("data-status", "completed")
    expect(by_id(page, "session-output-join")).to_contain_text('"id": 42')
    bars = {name: by_id(page, f"timeline-bar-{name}") for name in ("start", "left", "right", "join")}
    span = {name: (float(bar.get_attribute("data-start-ms")), float(bar.get_attribute("data-end-ms")))
            for name, bar in bars.items()}
    box = {name: bar.bounding_box() for name, bar in bars.items()}
    # Each branch took about BRANCH_SECONDS, and they ran at the same time: the bars overlap.
    for branch in ("left", "right"):
        assert span[branch][1] - span[branch][0] >= BRANCH_SECONDS * 1000 * 0.9
        assert span[branch][0] >= span["start"][1] - 1
    overlap_ms = min(span["left"][1], span["right"][1]) - max(span["left"][0], span["right"][0])
    assert overlap_ms > BRANCH_SECONDS * 1000 / 2
    left, right = box["left"], box["right"]
    overlap_px = min(left["x"] + left["width"], right["x"] + right["width"]) - max(left["x"], right["x"])
    assert overlap_px > min(left["width"], right["width"]) / 2
    assert box["join"]["x"] >= max(left["x"] + left["width"], right["x"] + right["width"]) - 2
    page.screenshot(path=str(IMAGES / "session-viewer.png"), full_page=True)


def test_the_json_stays_one_click_away_both_ways(page, builder):
    expect = sync_api.expect
    log_in(page, builder)
    page.goto("/admin/interactions/interaction/add/")
    drop_task(page, "delay", "wait", 0.3, 0.15)
    set_fixed(page, "wait", "seconds", "2")
    by_id(page, "toggle-json").click()
    textarea = page.locator("#id_tasks")
    expect(textarea).to_be_visible()
    assert '"seconds": 2' in textarea.input_value()
    textarea.fill('{"wait": {"type": "delay", "body": {"seconds": 3}}, '
                  '"after": {"type": "fail", "execute_after": {"wait": ["failed"]}}}')
    by_id(page, "toggle-json").click()
    expect(textarea).to_be_hidden()
    # "after" came without a position: placed by the automatic layout, below "wait".
    expect(by_id(page, "node-after")).to_be_visible()
    assert by_id(page, "node-after").bounding_box()["y"] > by_id(page, "node-wait").bounding_box()["y"]
    expect(by_id(page, "edge-wait-after")).to_have_attribute("data-condition", "failed")
    select(page, "wait")
    expect(by_id(page, "field-wait-seconds")).to_have_value("3")


def test_integrations_offered_are_the_users_own_of_the_types_provider(page, builder, other_user):
    from tests.conftest import make_integration

    tweets = make_integration(builder, "twitter", name="our-twitter")
    make_integration(builder, "smtp", name="our-mail")
    make_integration(other_user, "twitter", name="their-twitter")
    log_in(page, builder)
    page.goto("/admin/interactions/interaction/add/")
    drop_task(page, "send_tweet", "announce", 0.5, 0.2)
    choice = by_id(page, "integration-announce")
    options = choice.locator("option").all_inner_texts()
    assert [o for o in options if not o.startswith("—")] == ["our-twitter"]
    choice.select_option(str(tweets.pk))
    by_id(page, "toggle-json").click()
    assert f'"integration": "{tweets.pk}"' in page.locator("#id_tasks").input_value()


def test_cancel_and_retry_from_the_session_viewer(page, builder, slow_http):
    expect = sync_api.expect
    from tests.conftest import make_interaction
    from interactions.sessions import session_start

    tasks = {
        "call": {"type": "http_request", "body": {"url": slow_http.url("/slow/8")}},
        "after": {"type": "fail", "execute_after": {"call": ["completed"]}},
    }
    interaction = make_interaction(builder, tasks=tasks, active=True)
    session, _ = session_start(user=builder, interaction=interaction, data={})
    log_in(page, builder)
    page.goto(f"/admin/interactions/session/{session.pk}/change/")
    # Laid out automatically (the API saved no positions), then live: call starts running.
    expect(by_id(page, "session-task-call")).to_have_attribute("data-status", "running", timeout=20_000)
    assert by_id(page, "session-task-after").bounding_box()["y"] > by_id(page, "session-task-call").bounding_box()["y"]
    by_id(page, "cancel-button").click()
    expect(by_id(page, "session-status")).to_have_text("cancelled")
    expect(by_id(page, "session-task-call")).to_have_attribute("data-status", "cancelled")
    session.refresh_from_db()
    assert session.status == Session.Status.CANCELLED
    by_id(page, "retry-button").click()
    page.wait_for_url(lambda url: str(session.pk) not in url and url.endswith("/change/"))
    retried = Session.objects.get(retry_of=session)
    assert str(retried.pk) in page.url
    expect(by_id(page, "session-viewer")).to_have_attribute("data-session-id", str(retried.pk))
    by_id(page, "cancel-button").click()  # leave no work behind
    expect(by_id(page, "session-status")).to_have_text("cancelled")
