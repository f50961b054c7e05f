"""The student's JupyterLab, driven in headless Chromium.

A JupyterLab server (as ``make lab`` starts it, on a copy of course/) runs on a free localhost
port with a random token. The test opens a chapter, runs all cells (the unfilled stubs raise
NotImplementedError, as they should), types answers into the exercise cells and presses
nbgrader's Validate button, reading the dialog as a student would:

1. only the first exercise answered: its visible tests are not among the failures;
2. every exercise answered correctly: "Success! Your notebook passes all the tests.";
3. a wrong answer to the first exercise: the dialog names its visible test as failed.

Screenshots of each step go to tests/artifacts/.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from autograder import COURSE, REPO, SOLUTIONS, cells
from tests import browser

pytestmark = pytest.mark.slow

#: The chapter the test works through: the quickest to validate.
CHAPTER, NOTEBOOK = "04_moths", "moths.ipynb"
STUB = "# YOUR CODE HERE"
SERVER_TIMEOUT = 60
VALIDATE_TIMEOUT = 60


def _correct_answers() -> list[tuple[str, str]]:
    """(grade_id, full cell text) of each answer cell, solution filled in, markers removed."""
    nb = nbformat.read(SOLUTIONS / CHAPTER / NOTEBOOK, as_version=4)
    answers = []
    for cell in nb.cells:
        if cells.is_answer(cell):
            lines = [
                line
                for line in cell.source.splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            ]
            answers.append((cells.grade_id(cell), "\n".join(lines)))
    return answers


def _visible_tests() -> dict[str, list[str]]:
    """For each answer's grade_id, the docstrings of the test cells that follow it."""
    nb = nbformat.read(COURSE / CHAPTER / NOTEBOOK, as_version=4)
    tests: dict[str, list[str]] = {}
    current = None
    for cell in nb.cells:
        if cells.is_answer(cell):
            current = cells.grade_id(cell)
            tests[current] = []
        elif cells.is_test(cell) and current:
            tests[current].append(cell.source.strip().splitlines()[0].strip('"'))
    return tests


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab on a copy of course/: yields (base URL, token, course copy)."""
    browser.skip_without_browser()
    tmp = tmp_path_factory.mktemp("lab")
    course = tmp / "course"
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token = browser.free_port(), secrets.token_hex(16)
    command = [
        str(REPO / "start"),  # as every route starts the students' lab (make lab, Binder, conda)
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
    ]
    if os.getuid() == 0:
        command.append("--allow-root")
    env = {
        **os.environ,
        # Keep the user's Jupyter settings and state out of the test, and the test's out of
        # theirs; the environment's own configuration (extensions) still applies.
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    # Render every cell (no windowing), so outputs far down the notebook are in the page, and
    # do not ask about Jupyter news.
    settings = tmp / "config" / "lab" / "user-settings" / "@jupyterlab"
    for extension, plugin, value in (
        ("notebook-extension", "tracker", '{"windowingMode": "none"}'),
        ("apputils-extension", "notification", '{"fetchNews": "false"}'),
    ):
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{plugin}.jupyterlab-settings").write_text(value)
    log_path = browser.ARTIFACTS / "lab-server.log"
    browser.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}/"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SERVER_TIMEOUT
            while True:
                if server.poll() is not None:
                    pytest.fail(f"jupyter lab exited with {server.returncode}; see {log_path}")
                try:
                    urllib.request.urlopen(f"{base}api/status?token={token}", timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"jupyter lab did not answer in {SERVER_TIMEOUT} s")
                    time.sleep(0.25)
            yield base, token, course
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait(driver, condition, timeout, message):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        shot = browser.screenshot(driver, "lab-timeout")
        pytest.fail(f"{message} (after {timeout} s; screenshot {shot})")


def _click_menu(driver, menu: str, item: str):
    from selenium.webdriver.common.by import By

    labels = driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel")
    next(label for label in labels if label.text == menu).click()
    entry = _wait(
        driver,
        lambda d: next(
            (e for e in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel") if e.text == item),
            None,
        ),
        10,
        f"no {item!r} in the {menu} menu",
    )
    entry.click()


def _set_cell_text(driver, cell, text: str):
    """Replace a cell's source as a student would, without the editor's auto-indent."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    editor = cell.find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    driver.execute_cdp_cmd("Input.insertText", {"text": text})


def _validate(driver, name: str) -> tuple[str, str]:
    """Press Validate, wait for nbgrader's dialog; return (result class, text) and close it."""
    from selenium.webdriver.common.by import By

    button = driver.find_element(
        By.CSS_SELECTOR,
        ".jp-NotebookPanel-toolbar .validate-button jp-button, "
        ".jp-NotebookPanel-toolbar .validate-button",
    )
    button.click()
    message = _wait(
        driver,
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#validation-message")), None),
        VALIDATE_TIMEOUT,
        "nbgrader's validation dialog did not appear",
    )
    classes = message.get_attribute("class") or ""
    result = next(
        (c.removeprefix("validation-") for c in classes.split() if c.startswith("validation-")),
        "",
    )
    text = message.text
    browser.screenshot(driver, f"lab-validate-{name}")
    driver.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept").click()
    _wait(
        driver,
        lambda d: not d.find_elements(By.CSS_SELECTOR, "#validation-message"),
        10,
        "the dialog did not close",
    )
    return result, text


def test_validate_in_the_students_jupyterlab(lab):
    from selenium.webdriver.common.by import By

    base, token, course = lab
    answers = _correct_answers()
    tests = _visible_tests()
    first_id, first_answer = answers[0]
    assert [gid for gid, _ in answers] == list(tests), "answers and tests out of step"
    timings = {}
    start = time.perf_counter()

    with browser.chromium() as driver:
        driver.get(f"{base}lab/tree/{CHAPTER}/{NOTEBOOK}?token={token}")
        _wait(
            driver,
            lambda d: d.execute_script(
                "const e = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                "return e && e.dataset.status === 'idle'"
                " && document.querySelectorAll('.jp-Notebook .jp-Cell').length > 10"
            ),
            60,
            "the notebook did not open with an idle kernel",
        )
        # nbgrader's student extension is there with Validate enabled; the instructor tools
        # (formgrader, create assignment, ...) are switched off for students.
        config = driver.execute_script(
            "return JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        )
        federated = [e["name"] for e in config.get("federated_extensions", [])]
        assert "@jupyter/nbgrader" in federated, f"lab extensions: {federated}"
        disabled = set(config.get("disabledExtensions", []))
        assert "@jupyter/nbgrader:validate-assignment" not in disabled, disabled
        assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= disabled
        # ... and so are their server extensions: the formgrader's pages do not exist.
        for page in ("formgrader", "formgrader/manage_assignments"):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(f"{base}{page}?token={token}", timeout=10)
            assert answer.value.code == 404, f"/{page} answered {answer.value.code}"
        timings["open"] = time.perf_counter() - start

        # Run all cells: the first unfilled stub stops the run with NotImplementedError.
        _click_menu(driver, "Run", "Run All Cells")
        _wait(
            driver,
            lambda d: (
                "NotImplementedError"
                in d.execute_script(
                    "return Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                    ".map(e => e.innerText).join('\\n')"
                )
            ),
            60,
            "running all cells never reached the unfilled exercise",
        )
        _wait(
            driver,
            lambda d: d.execute_script(
                "return document.querySelector('.jp-Notebook-ExecutionIndicator')"
                ".dataset.status === 'idle'"
            ),
            60,
            "the kernel stayed busy",
        )
        ran = driver.execute_script(
            "return Array.from(document.querySelectorAll('.jp-InputArea-prompt'))"
            ".filter(e => /\\[\\d+\\]/.test(e.innerText)).length"
        )
        assert ran >= 3, f"only {ran} cells ran"
        browser.screenshot(driver, "lab-run-all")
        timings["run all"] = time.perf_counter() - start

        def answer_cells():
            return [
                c
                for c in driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")
                if STUB in c.find_element(By.CSS_SELECTOR, ".cm-content").text
            ]

        # 1. The first exercise answered correctly, the others still stubs.
        stubs = answer_cells()
        assert len(stubs) == len(answers), f"{len(stubs)} stub cells, {len(answers)} answers"
        _set_cell_text(driver, stubs[0], first_answer)
        result, text = _validate(driver, "first-correct")
        assert result == "failed", f"the other exercises are unanswered, yet: {result}: {text}"
        for docstring in tests[first_id]:
            assert docstring not in text, f"{first_id}'s test failed with a correct answer"
        for gid, _ in answers[1:]:
            assert any(d in text for d in tests[gid]), f"{gid}'s tests should fail unanswered"
        saved = nbformat.read(course / CHAPTER / NOTEBOOK, as_version=4)
        typed = next(c for c in saved.cells if cells.grade_id(c) == first_id).source
        assert typed.strip() == first_answer.strip(), "the editor changed the typed answer"
        timings["validate 1"] = time.perf_counter() - start

        # 2. Every exercise answered correctly: nbgrader's success message.
        for (_, answer), cell in zip(answers[1:], answer_cells(), strict=True):
            _set_cell_text(driver, cell, answer)
        result, text = _validate(driver, "all-correct")
        assert result == "success", text
        assert "Success! Your notebook passes all the tests." in text
        timings["validate 2"] = time.perf_counter() - start

        # 3. A wrong answer to the first exercise: its visible test fails.
        wrong = first_answer.replace("x_C * carbonaria / carbonaria.sum()", "x_C * carbonaria")
        assert wrong != first_answer, "the wrong answer is no longer derived from the solution"
        first_cell = next(
            c
            for c in driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")
            if f"def {first_id}(" in c.find_element(By.CSS_SELECTOR, ".cm-content").text
        )
        _set_cell_text(driver, first_cell, wrong)
        result, text = _validate(driver, "first-wrong")
        assert result == "failed", text
        assert "The following cell failed:" in text
        assert tests[first_id][0] in text, f"{first_id}'s first visible test did not fail: {text}"
        timings["validate 3"] = time.perf_counter() - start

    print("JupyterLab test timings (s, cumulative):", {k: round(v, 1) for k, v in timings.items()})
