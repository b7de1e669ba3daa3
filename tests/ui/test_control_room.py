"""The Airflow UI as people use it, in headless Chromium: ``airflow standalone`` on a free port
with a fresh home, a real ``mlflow server``, and a churn lake of four days.

One stack for the module, one signed-in browser page; the tests run in order (each builds on
the runs of the one before) and every step leaves a screenshot (tests/ui/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import json as _json
import re
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from tests.conftest import write_batches
from tests.services.standalone import ADMIN, Standalone, wait_for_run
from tests.ui.conftest import missing_browser

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.services.topology import Api

pytestmark = [pytest.mark.slow, pytest.mark.ui]

MODEL = "churn"
DAGS = [f"train_{MODEL}", f"score_{MODEL}", f"monitor_{MODEL}"]
TIMEOUT_MS = 30_000
WEBHOOK_SECRET = secrets.token_urlsafe(24)  # shared by the MLflow webhook and the api-server


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if why := missing_browser():
        pytest.skip(why)
    root = tmp_path_factory.mktemp("ui-stack")
    lake = root / "lake"
    env = {
        "MLCYCLE_LAKE_ROOT": str(lake),
        "MLCYCLE_LEDGER_URI": f"sqlite:///{root / 'ledger.db'}",
        "MLCYCLE_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "MLCYCLE_ALLOWED_INPUTS": str(root),
        "OMP_NUM_THREADS": "1",
        "MLCYCLE_MLFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    write_batches(str(lake), MODEL, dt.datetime.now(dt.UTC).date(), days=4, rows=1500)
    st = Standalone(root, env, mlflow_server=True, dag_ids=set(DAGS))
    try:
        api = st.start()
        yield st, api
    finally:
        st.stop()


@pytest.fixture(scope="module")
def ui(stack, browser) -> Page:
    """A browser page signed in to the Airflow UI through its login form."""
    st, _ = stack
    context = browser.new_context(base_url=st.base, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/")  # redirected to the login form
    page.locator("input[name=username]").wait_for()
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", st.password())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    yield page
    context.close()


def trigger_from_form(
    page: Page,
    dag_id: str,
    *,
    fill: dict[str, str] | None = None,
    switch: dict[str, bool] | None = None,
    json: dict[str, object] | None = None,
) -> str:
    """Open the DAG's Trigger form, check it opens without errors, fill ``fill`` (``Section/param``
    -> text) and set the switches ``switch`` (``Section/param`` -> on/off), trigger; the new run's
    id (from the page the UI goes to)."""
    page.goto(f"/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-state=open]")
    dialog.get_by_text(f"Trigger Dag - {dag_id}").wait_for()
    for where, value in {**(fill or {}), **(switch or {})}.items():
        section, param = where.split("/")
        field = dialog.locator(f"[name=element_{param}]").first  # the form names each field so
        if not field.is_visible():
            dialog.get_by_text(section, exact=True).click()  # open its section
        if isinstance(value, bool):  # a switch: its input is hidden, its label is what people click
            if field.is_checked() != value:
                field.locator("xpath=ancestor::label[1]").click()
            assert field.is_checked() is value, f"{param} did not switch to {value}"
        else:
            field.fill(value)
    for where, document in (json or {}).items():  # a JSON field is a code editor
        section, param = where.split("/")
        # The open section's editor: closed sections (and Advanced Options) keep theirs hidden.
        editor = dialog.locator(".monaco-editor:visible, .cm-editor:visible")
        if editor.count() == 0:
            dialog.get_by_text(section, exact=True).click()
        editor.first.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Backspace")
        page.keyboard.insert_text(_json.dumps(document))
        # The editor may have auto-closed a bracket or quote after the cursor: drop what follows.
        page.keyboard.press("Control+Shift+End")
        page.keyboard.press("Delete")
    submit = dialog.get_by_role("button", name="Trigger")
    assert submit.is_enabled(), f"the Trigger button of {dag_id} is disabled: {dialog.inner_text()[:2000]}"
    assert "This field is required" not in dialog.inner_text(), dialog.inner_text()[:2000]
    submit.click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/manual__"))
    return page.url.split("/runs/", 1)[1].split("/", 1)[0]


def run_page(page: Page, dag_id: str, run_id: str) -> None:
    """Open the run in the UI and wait until it shows the run finished."""
    page.goto(f"/dags/{dag_id}/runs/{run_id}")
    page.get_by_text(re.compile(r"^(Success|Failed)$")).first.wait_for()


def links_of(api: Api, dag_id: str, run_id: str, task_id: str) -> dict[str, str]:
    return api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/links")[
        "extra_links"
    ]


def states_of(api: Api, dag_id: str, run_id: str) -> dict[str, str]:
    tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in tis if ti["map_index"] in (-1, 0)}


def evidence_frame_text(page: Page, dag_id: str, run_id: str, task_id: str) -> str:
    """Open the task's Evidence tab (embedded in the UI) and return what the page in it says."""
    page.goto(f"/dags/{dag_id}/runs/{run_id}/tasks/{task_id}")
    page.get_by_role("link", name="Evidence", exact=True).first.click()
    page.wait_for_url(re.compile(r"/plugin/mlcycle-evidence$"))
    frame = page.frame_locator("iframe").first
    frame.locator("h1").first.wait_for()
    return frame.locator("body").inner_text()


# --- the tests, in order ----------------------------------------------------------------------------


def test_every_dag_triggers_from_its_form_with_the_defaults(stack, ui, shots_for):
    _, api = stack
    shots = shots_for(ui)
    runs = {}
    for dag_id in DAGS:  # train first: scoring and monitoring need a champion
        with shots.step(f"trigger {dag_id} with the defaults"):
            runs[dag_id] = run_id = trigger_from_form(ui, dag_id)
        with shots.step(f"{dag_id} run finished"):
            # Unpausing (the form's default) also starts the newest missed scheduled run first.
            run = wait_for_run(api, dag_id, run_id=run_id, timeout=600)
            run_page(ui, dag_id, run_id)
            assert run["state"] == "success", (dag_id, states_of(api, dag_id, run_id))
            assert not run["conf"].get("reason") and not run["conf"].get("batch_uri"), run["conf"]
    # The champion exists: the nightly run (started by the unpause) trained and promoted v1; the
    # manual run with the defaults then found identical data and skipped training.
    train = states_of(api, DAGS[0], runs[DAGS[0]])
    assert train["train_model"] == "skipped" and train["promote"] == "skipped", train
    # A task that never ran (skipped behind train_model) has no null link in the REST API.
    for task_id in ("train_model", "evaluate_model", "gate", "promote"):
        assert None not in links_of(api, DAGS[0], runs[DAGS[0]], task_id).values(), task_id
    with shots.step("a skipped task's evidence tab says why"):
        text = evidence_frame_text(ui, DAGS[0], runs[DAGS[0]], "train_model")
        assert "skipped" in text and "identical data" in text, text


def test_a_run_with_non_default_params_trains_and_its_links_reach_their_pages(stack, ui, shots_for):
    st, api = stack
    shots = shots_for(ui)
    reason = "UI test: retrain on purpose"
    with shots.step("trigger train with a reason and force"):
        run_id = trigger_from_form(ui, DAGS[0], fill={"Run/reason": reason}, switch={"Run/force": True})
    with shots.step("the forced run finished"):
        run = wait_for_run(api, DAGS[0], run_id=run_id, timeout=600)
        run_page(ui, DAGS[0], run_id)
        assert run["state"] == "success" and run["conf"]["reason"] == reason and run["conf"]["force"] is True
    states = states_of(api, DAGS[0], run_id)
    assert states["train_model"] == "success" and states["gate"] == "success", states

    from mlcycle.store import registry

    mlc = registry.client(st.mlflow_uri)
    version = registry.version_for_run(mlc, MODEL, DAGS[0], run_id)
    assert version is not None and version.tags["trigger.reason"] == reason

    with shots.step("the validation evidence is a table of expectations"):
        text = evidence_frame_text(ui, DAGS[0], run_id, "validate_data")
        assert "Data contract" in text and "PASSED" in text and "expect_column_values_to_not_be_null" in text
    with shots.step("the gate evidence is the verdict of this version"):
        text = evidence_frame_text(ui, DAGS[0], run_id, "gate")
        assert f"Candidate version {version.version}" in text and "Rules" in text, text
    links = links_of(api, DAGS[0], run_id, "train_model")
    assert links["MLflow run"].startswith(st.mlflow_uri) and links["Model version"].endswith(
        f"/versions/{version.version}"
    )
    with shots.step("the MLflow run link opens the run in MLflow"):
        ui.goto(f"/dags/{DAGS[0]}/runs/{run_id}/tasks/train_model")
        ui.get_by_text("Details", exact=True).first.click()  # the extra links are on this tab
        with ui.context.expect_page() as opened:
            ui.get_by_role("link", name="MLflow run").click()
        mlflow_page = opened.value
        mlflow_page.wait_for_load_state()
        assert mlflow_page.url == links["MLflow run"]
        # MLflow's own UI renders the run: its id is on the page.
        mlflow_page.get_by_text(links["MLflow run"].rsplit("/", 1)[-1]).first.wait_for(timeout=60_000)
        shots.save("the run in MLflow", mlflow_page)
        mlflow_page.close()


def test_a_refused_candidate_is_a_skipped_promote_not_a_red_task(stack, ui, shots_for):
    _, api = stack
    shots = shots_for(ui)
    with shots.step("trigger train with a crippled estimator"):
        run_id = trigger_from_form(
            ui, DAGS[0], fill={"Run/reason": "UI test: a worse candidate"},
            json={"Training/estimator_params": {"max_iter": 1, "max_leaf_nodes": 2}},
        )  # fmt: skip
    with shots.step("the refused run is green with promote skipped"):
        run = wait_for_run(api, DAGS[0], run_id=run_id, timeout=600)
        run_page(ui, DAGS[0], run_id)
        states = states_of(api, DAGS[0], run_id)
        assert run["state"] == "success" and states["gate"] == "success" and states["promote"] == "skipped", (
            states
        )
    with shots.step("promote's evidence tab gives the verdict"):
        text = evidence_frame_text(ui, DAGS[0], run_id, "promote")
        assert "skipped" in text and "stays registered but is not promoted" in text and "FAIL:" in text, text
    with shots.step("the verdict page plots both models"):
        ui.goto(f"/dags/{DAGS[0]}/runs/{run_id}/tasks/gate/plugin/mlcycle-evidence")
        frame = ui.frame_locator("iframe").first
        frame.get_by_text("FAILED").first.wait_for()
        for chart in ("ROC curve", "Precision-recall", "Calibration"):
            assert (
                frame.locator(
                    f'svg[aria-label="{chart}"] polyline.candidate, svg[aria-label="{chart}"] circle.candidate'
                ).count()
                >= 1
            ), chart
            assert (
                frame.locator(
                    f'svg[aria-label="{chart}"] polyline.champion, svg[aria-label="{chart}"] circle.champion'
                ).count()
                >= 1
            ), chart
        assert frame.locator("table.slices tr.rule").count() >= 2
        assert frame.get_by_role("link", name="verdict json").count() == 1
    with shots.step("the verdict page on its own, plots and all"):
        ui.goto(ui.locator("iframe").first.get_attribute("src") or "")
        ui.locator('svg[aria-label="ROC curve"]').wait_for()


def awaiting_approval(st: Standalone, api: Api, run_id: str, timeout: float = 600) -> str:
    """Wait until the run's ``approve`` task asks for a person, and the scheduler has seen its
    worker exit; the candidate's version.

    The second wait is Airflow 3.3's: an answer that resumes the task before the scheduler
    has processed the worker's exit on deferral fails it as "changed externally"
    (apache/airflow#67287, #72716). A person takes longer than that window; a test must wait."""
    deadline = time.monotonic() + timeout
    seen = f"TaskInstance Finished: dag_id={DAGS[0]}, task_id=approve, run_id={run_id},"
    while time.monotonic() < deadline:
        states = states_of(api, DAGS[0], run_id)
        if states.get("approve") == "awaiting_input" and any(
            seen in line and "state=awaiting_input" in line
            for line in st.log("standalone").read_text(errors="replace").splitlines()
        ):
            gate = api.call(
                "GET",
                f"/api/v2/dags/{DAGS[0]}/dagRuns/{quote(run_id)}/taskInstances/gate/xcomEntries/return_value",
            )
            return str(gate["value"]["version"])
        assert states.get("gate") not in ("failed", "upstream_failed"), states
        assert states.get("approve") not in ("success", "skipped", "failed"), (
            f"approve finished without asking: {states}"
        )
        time.sleep(3)
    raise AssertionError(f"approve of {run_id} did not ask for a person within {timeout:.0f} s")


def answer_in_the_ui(page: Page, run_id: str, version: str, option: str, comment: str) -> None:
    """Open the task's Required Actions, check the question, write a comment and answer."""
    page.goto(f"/dags/{DAGS[0]}/runs/{run_id}/tasks/approve/required_actions")
    page.get_by_text(f"Promote {MODEL} v{version} to champion?").first.wait_for()
    page.get_by_text("passed its gate").first.wait_for()  # the body: verdict and links
    page.locator("[name=element_comment]").first.fill(comment)
    page.get_by_role("button", name=option, exact=True).first.click()


def test_a_promotion_that_needs_approval_waits_for_a_person_who_approves_or_rejects(stack, ui, shots_for):
    st, api = stack
    shots = shots_for(ui)
    from mlcycle.store import ledger, registry

    mlc = registry.client(st.mlflow_uri)
    ask = {
        "fill": {"Run/reason": "UI test: needs approval"},
        "switch": {"Run/force": True, "Gate/require_approval": True},
    }
    with shots.step("trigger train with require approval"):
        run_id = trigger_from_form(ui, DAGS[0], **ask)
        version = awaiting_approval(st, api, run_id)
    with shots.step("approve it in Required Actions"):
        answer_in_the_ui(ui, run_id, version, "Approve", "UI test: slices look fine")
        run = wait_for_run(api, DAGS[0], run_id=run_id, timeout=300)
        states = states_of(api, DAGS[0], run_id)
        assert run["state"] == "success" and states["promote"] == "success", states
    assert str(registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version) == version
    entry = ledger.history(MODEL, uri=st.env["MLCYCLE_LEDGER_URI"])[0]
    assert entry.new_version == version and entry.actor == f"{ADMIN}:{DAGS[0]}", entry
    assert entry.reason.endswith(f"approved by {ADMIN}: UI test: slices look fine"), entry

    with shots.step("trigger another and reject it"):
        run_id = trigger_from_form(ui, DAGS[0], **ask)
        rejected = awaiting_approval(st, api, run_id)
        answer_in_the_ui(ui, run_id, rejected, "Reject", "UI test: not this one")
        run = wait_for_run(api, DAGS[0], run_id=run_id, timeout=300)
        states = states_of(api, DAGS[0], run_id)
        assert run["state"] == "success" and states["approve"] == "success" and states["promote"] == "skipped"
    assert str(registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version) == version
    with shots.step("promote's evidence tab says who rejected it"):
        text = evidence_frame_text(ui, DAGS[0], run_id, "promote")
        assert f"rejected by {ADMIN}: UI test: not this one" in text and "champion unchanged" in text, text

    with shots.step("trigger one that nobody answers, with an 18 s timeout"):
        run_id = trigger_from_form(
            ui, DAGS[0], fill={"Run/reason": "UI test: nobody answers"}, switch={"Run/force": True},
            json={"Gate/gate_overrides": {"approval": {"required": True, "timeout_hours": 0.005}}},
        )  # fmt: skip
        awaiting_approval(st, api, run_id)
    with shots.step("the timed-out run keeps the champion"):
        run = wait_for_run(api, DAGS[0], run_id=run_id, timeout=300)  # the scheduler sweeps every 15 s
        states = states_of(api, DAGS[0], run_id)
        assert run["state"] == "success" and states["promote"] == "skipped", states
        text = evidence_frame_text(ui, DAGS[0], run_id, "promote")
        assert "no answer within 0.005 h: rejected by default" in text, text
    assert str(registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version) == version


def test_rollback_from_its_form_moves_the_champion_and_the_ledger_shows_it(stack, ui, shots_for):
    st, api = stack
    shots = shots_for(ui)
    from mlcycle.store import registry

    mlc = registry.client(st.mlflow_uri)
    before = registry.version_by_alias(mlc, MODEL, registry.CHAMPION)
    versions = sorted(int(v.version) for v in mlc.search_model_versions(f"name = '{MODEL}'"))
    assert before is not None and len(versions) >= 2, versions
    # A version that passed its gate if there is one (the earlier runs' outcomes decide), else
    # any other version with force.
    others = [v for v in versions if v != int(before.version)]
    gated = [v for v in others if mlc.get_model_version(MODEL, str(v)).tags.get("gate.verdict") == "pass"]
    target, force = (gated[-1], False) if gated else (others[-1], True)
    reason = "UI test: roll back"
    with shots.step("the rollback form asks for a reason"):
        ui.goto(f"/dags/rollback_{MODEL}")
        ui.get_by_role("button", name="Trigger").first.click()
        dialog = ui.locator("[role=dialog][data-state=open]")
        dialog.get_by_text(f"Trigger Dag - rollback_{MODEL}").wait_for()
        assert not dialog.get_by_role("button", name="Trigger").is_enabled()  # no reason yet
        dialog.get_by_role("button", name="Close").first.click()
    with shots.step("trigger rollback with a version and a reason"):
        run_id = trigger_from_form(
            ui,
            f"rollback_{MODEL}",
            fill={"Why/reason": reason, "Target/version": str(target)},
            switch={"Target/force": True} if force else None,
        )
    with shots.step("the rollback run finished"):
        run = wait_for_run(api, f"rollback_{MODEL}", run_id=run_id, timeout=300)
        run_page(ui, f"rollback_{MODEL}", run_id)
        assert run["state"] == "success", states_of(api, f"rollback_{MODEL}", run_id)
    assert str(registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version) == str(target)
    with shots.step("the ledger page shows the rollback"):
        ui.goto("/mlcycle/ledger?model=churn&action=rollback")
        row = ui.locator("tr.move.rollback").first
        assert reason in row.inner_text() and row.get_by_role("link", name=str(target)).count() == 1
        assert (
            row.get_by_role("link", name="Airflow run")
            .get_attribute("href")
            .startswith(f"/dags/rollback_{MODEL}/runs/")
        )


def test_the_model_page_shows_the_versions_rolls_back_and_flags_a_move_behind_its_back(stack, ui, shots_for):
    st, api = stack
    shots = shots_for(ui)
    from mlcycle.store import ledger, registry

    mlc = registry.client(st.mlflow_uri)
    champion = str(registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version)
    previous = ledger.history(MODEL, uri=st.env["MLCYCLE_LEDGER_URI"])[0].previous_version
    versions = sorted(
        (v for v in mlc.search_model_versions(f"name = '{MODEL}'")), key=lambda v: -int(v.version)
    )
    with shots.step("the DAG page's Model tab opens the model page"):
        ui.goto(f"/dags/{DAGS[0]}")
        ui.get_by_role("link", name="Model", exact=True).first.click()
        ui.wait_for_url(re.compile(r"/plugin/mlcycle-model$"))
        frame = ui.frame_locator("iframe").first
        frame.get_by_text(f"Model {MODEL}").first.wait_for()
        rows = frame.locator("tr.version")
        assert rows.count() == len(versions)
        for i, mv in enumerate(versions):  # newest first, each with its verdict
            row = rows.nth(i)
            assert row.locator("a").first.inner_text() == f"v{mv.version}"
            verdict = mv.tags.get("gate.verdict")
            assert (verdict or "not gated").upper() in row.inner_text().upper(), (
                mv.version,
                row.inner_text(),
            )
        assert frame.locator("tr.version.champion a").first.inner_text() == f"v{champion}"
        assert frame.locator('svg[aria-label^="holdout"] polyline.candidate').count() == 1
        assert frame.locator('svg[aria-label^="drift share"]').count() == 1  # monitor ran in the first test
        href = frame.locator("tr.version a").first.get_attribute("href") or ""
        assert href.startswith(st.mlflow_uri) and href.endswith(f"/versions/{versions[0].version}"), href
    with shots.step("roll back to the previous champion from the model page"):
        form = frame.locator("form.rollback")
        form.locator("input[name=reason]").fill("UI test: back from the model page")
        form.get_by_role("button", name=f"Trigger rollback_{MODEL}").click()
        queued = form.locator("output.rollback-result.pass a")
        queued.wait_for()
        run_id = queued.inner_text().split()[1]
    with shots.step("the rollback from the model page finished"):
        run = wait_for_run(api, f"rollback_{MODEL}", run_id=run_id, timeout=300)
        assert run["state"] == "success", states_of(api, f"rollback_{MODEL}", run_id)
        assert str(registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version) == previous
    with shots.step("a move behind the pipeline's back: MLflow's webhook runs guard_churn, which fails"):
        # Unpaused, the guard first runs for its last daily interval (it is asset OR @daily): let that
        # run find the champion where the pipeline left it before anything moves it.
        api.call("PATCH", f"/api/v2/dags/guard_{MODEL}?update_mask=is_paused", {"is_paused": False})
        daily = wait_for_run(api, f"guard_{MODEL}", run_type="scheduled", timeout=300)
        assert daily["state"] == "success", states_of(api, f"guard_{MODEL}", daily["dag_run_id"])
        registry.create_webhook(mlc, f"{st.base}/mlcycle/webhooks/mlflow", WEBHOOK_SECRET)
        refused = [v for v in versions if v.tags.get("gate.verdict") == "fail"]
        target = str((refused or [v for v in versions if str(v.version) != previous])[0].version)
        mlc.set_registered_model_alias(MODEL, "champion", target)
        try:
            run = wait_for_run(api, f"guard_{MODEL}", run_type="asset_triggered", timeout=300)
        except AssertionError as exc:  # say whether MLflow delivered and what the api-server answered
            lines = [
                line
                for name in ("mlflow", "standalone")
                for line in st.log(name).read_text(errors="replace").splitlines()
                if "webhook" in line.lower() or "champion_moved" in line
            ]
            raise AssertionError(f"{exc}\nwebhook lines in the logs:\n" + "\n".join(lines[-20:])) from exc
        assert run["state"] == "failed", states_of(api, f"guard_{MODEL}", run["dag_run_id"])
        entry = ledger.history(MODEL, uri=st.env["MLCYCLE_LEDGER_URI"])[0]
        assert (entry.previous_version, entry.new_version, entry.action) == (previous, target, "external")
        assert entry.dag_id == f"guard_{MODEL}"
    with shots.step("the model page shows the move red"):
        ui.goto(f"/dags/{DAGS[0]}/plugin/mlcycle-model")
        frame = ui.frame_locator("iframe").first
        flag = frame.locator(".alias-check.external")
        flag.wait_for()
        assert f"@champion is v{target} but the pipeline last moved it to v{previous}" in flag.inner_text()
        assert f"v{target}" in frame.locator("tr.move.external").first.inner_text()
    with shots.step("scoring still runs, and records the move only once"):
        run = api.call("POST", f"/api/v2/dags/{DAGS[1]}/dagRuns", {"logical_date": None, "conf": {}})
        run = wait_for_run(api, DAGS[1], run_id=run["dag_run_id"], timeout=300)
        assert run["state"] == "success", states_of(api, DAGS[1], run["dag_run_id"])
        moves = ledger.history(MODEL, uri=st.env["MLCYCLE_LEDGER_URI"])
        assert [e.action for e in moves].count("external") == 1
