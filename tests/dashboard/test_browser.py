"""The dashboard in a real browser (Debian's headless Chromium via chromedriver) against a real
experiment: graph format, local worker processes, trials held on gate files so the test decides
when each one finishes. Every wait is for a condition; screenshots are kept in pytest's tmp dir."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from dashboard_support import get_json
from selenium import webdriver
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from torch import nn

import nasflow
from nasflow.dashboard import serve
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.strategy import GridSearch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)
HANG_GUARD = 180  # seconds: only stops a broken run from hanging; every wait ends when its condition holds
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--window-size=1360,1000"]


class TinySpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("width", [4, 8])
        self.fc = MutableLinear(6, width)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.head = MutableLinear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc(x)))


def curve(width: int, relu: bool) -> list[float]:
    return [width / 10 + step / 7 + 0.5 * relu for step in range(3)]


def gated(model: nn.Module, gate_dir: str) -> None:
    """Reports a known curve, then waits for the test to create the gate file named after the model."""
    width = next(m for m in model.modules() if isinstance(m, nn.Linear)).out_features
    relu = any(isinstance(m, nn.ReLU) for m in model.modules())
    name = f"{width}-{'relu' if relu else 'tanh'}"
    print(f"training {name}", flush=True)
    for value in curve(width, relu):
        nasflow.report_intermediate_result(value)
    while not (Path(gate_dir) / name).exists():
        time.sleep(0.05)
    if name == "8-tanh":
        raise ValueError(f"{name} diverged")
    nasflow.report_final_result(width + 0.5 * relu)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: webdriver.Chrome, condition: Callable[[], Any], what: str) -> Any:
    """Wait until ``condition()`` is truthy (it may raise while the page re-renders)."""
    def check(_: Any) -> Any:
        try:
            return condition()
        except (JavascriptException, StaleElementReferenceException):
            return None
    return WebDriverWait(driver, HANG_GUARD, poll_frequency=0.1).until(check, f"waiting for {what}")


def table(driver: webdriver.Chrome) -> dict[int, str]:
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#trials-table tbody tr[data-id]')]"
        ".map(tr => [Number(tr.dataset.id), tr.dataset.status])")
    return dict(rows)


def downloaded(driver: webdriver.Chrome, suffix: str, before: set[Path]) -> Path:
    def ready() -> Path | None:
        new = [p for p in driver.downloads.iterdir() if p not in before and p.suffix == suffix]
        return new[0] if new else None
    return until(driver, ready, f"a {suffix} download")


def test_watch_filter_plot_export_and_stop_a_live_experiment(browser: webdriver.Chrome, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots in {shots}")
    gates = tmp_path / "gates"
    gates.mkdir()
    config = NasExperimentConfig("ts", "graph", "local", experiment_working_directory=str(tmp_path / "exps"),
                                 progress=False, max_trial_number=4, trial_concurrency=2)
    experiment = NasExperiment(TinySpace(), FunctionalEvaluator(gated, gate_dir=str(gates)), GridSearch(shuffle=False),
                               config, id="browse")
    experiment.run(port=0, wait_completion=False)
    url = experiment.dashboard.url
    try:
        # Two trials run at once and wait on their gates; the table shows them training.
        browser.get(url + "#/trials")
        until(browser, lambda: list(table(browser).values()).count("training") == 2, "two training rows")
        assert "trained" not in table(browser).values()
        browser.save_screenshot(str(shots / "1-training.png"))

        def by_name() -> dict[str, str]:
            rows = get_json(url + "api/trials")["rows"]
            names.update({row["id"]: f"{row['sample']['width']}-{row['sample']['act']}" for row in rows})
            return {names[i]: status for i, status in table(browser).items() if i in names}

        names: dict[int, str] = {}
        by_name()
        first = min(i for i, status in table(browser).items() if status == "training")

        # A trial finishes: its row turns trained without a reload, while the other still trains.
        (gates / names[first]).touch()
        until(browser, lambda: table(browser).get(first) == "trained", f"model {first} trained")
        assert "training" in table(browser).values()
        for name in ("4-relu", "8-relu", "8-tanh"):  # 4-tanh stays held, for the stop control below
            (gates / name).touch()
        expected = {"4-relu": "trained", "8-relu": "trained", "8-tanh": "failed", "4-tanh": "training"}
        until(browser, lambda: by_name() == expected, "rows for every model as trials finish")
        ids = {name: i for i, name in names.items()}
        browser.save_screenshot(str(shots / "2-finished.png"))

        # Filters narrow the table: by status, then by a choice.
        browser.find_element(By.ID, "filter-status-failed").click()
        until(browser, lambda: table(browser) == {ids["8-tanh"]: "failed"}, "only the failed row")
        reason = browser.find_element(By.CSS_SELECTOR, "#trials-table td.error").text
        assert reason == "ValueError: 8-tanh diverged"
        browser.find_element(By.ID, "filter-status-failed").click()
        until(browser, lambda: len(table(browser)) == 4, "all rows again")
        Select(browser.find_element(By.CSS_SELECTOR, "select[data-label='act']")).select_by_value('"relu"')
        until(browser, lambda: set(table(browser)) == {ids["4-relu"], ids["8-relu"]}, "only relu rows")
        assert browser.execute_script("return location.hash").endswith("c.act=%22relu%22")
        browser.save_screenshot(str(shots / "3-filtered.png"))

        # The curve of a model holds exactly the reported points, drawn where they belong.
        model = ids["8-relu"]
        browser.get(url + f"#/curves?ids={model}")
        script = f"return document.querySelector('#curve-chart').plot.series.find(s => s.id === {model} && !s.faint)"
        series = until(browser, lambda: browser.execute_script(script), "the highlighted curve")
        assert series["points"] == [[step + 1, value] for step, value in enumerate(curve(8, True))]
        pixels = browser.execute_script(f"""
            const plot = document.querySelector('#curve-chart').plot;
            const ctx = plot.canvas.getContext('2d'), ratio = plot.canvas.width / plot.width;
            return plot.series.find(s => s.id === {model} && !s.faint).points.map(([x, y]) => {{
              const [px, py] = plot.toPixel(x, y);
              return Array.from(ctx.getImageData(Math.round(px * ratio), Math.round(py * ratio), 1, 1).data);
            }});""")
        assert all(alpha == 255 and (r, g, b) != (255, 255, 255) for r, g, b, alpha in pixels), pixels
        assert len(browser.execute_script("return document.querySelector('#curve-chart').plot.series")) == 4
        browser.save_screenshot(str(shots / "4-curves.png"))

        # A trial's page shows its log (the trial's own output) and its generated code.
        browser.get(url + f"#/trial/{model}")
        until(browser, lambda: "training 8-relu" in browser.find_element(By.ID, "log").text, "the trial's log")
        code = until(browser, lambda: browser.find_element(By.ID, "code").text, "the generated code")
        assert "class TinySpace(nn.Module)" in code and "nn.Linear(6, 8)" in code
        browser.save_screenshot(str(shots / "5-trial.png"))

        # Compare two models side by side; relate each choice to the metric.
        browser.get(url + f"#/compare?ids={ids['4-relu']},{model}")
        header = until(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#compare-table thead").text, "compare")
        assert header.split() == [f"#{ids['4-relu']}×", f"#{model}×"]
        differing = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#compare-table tr.differs")]
        assert [name for name in differing if name != "Duration"] == ["Final", "width"]  # same status, steps, act
        browser.get(url + "#/choices")
        rows = until(browser, lambda: browser.execute_script(
            "return document.querySelector('#parallel-chart').plot.rows.map(r => [r.id, r.values])"), "coordinates")
        assert sorted(rows) == sorted([[ids["4-relu"], [0, 0, 4.5]], [ids["8-relu"], [1, 0, 8.5]]])
        browser.save_screenshot(str(shots / "6-choices.png"))

        # Export from the overview downloads the best model's sample and its code.
        browser.get(url + "#/")
        until(browser, lambda: browser.find_element(By.ID, "best").text.startswith("BEST MODEL\n8.5"), "the best")
        before = set(browser.downloads.iterdir())
        browser.find_element(By.PARTIAL_LINK_TEXT, "Download code").click()
        source = downloaded(browser, ".py", before).read_text()
        best_code = experiment.export_top_models(1, formatter="code")[0]
        assert source == f"# model {ids['8-relu']}, metric 8.5\n{best_code}"
        before = set(browser.downloads.iterdir())
        browser.find_element(By.PARTIAL_LINK_TEXT, "Download samples").click()
        assert json.loads(downloaded(browser, ".json", before).read_text()) == experiment.export_top_models(1)
        browser.save_screenshot(str(shots / "7-overview.png"))

        # The stop control stops the experiment (the held trial is interrupted).
        browser.find_element(By.ID, "stop").click()
        WebDriverWait(browser, HANG_GUARD).until(expected_conditions.alert_is_present()).accept()
        until(browser, lambda: browser.find_element(By.ID, "experiment-status").text == "stopped", "stopped")
        assert experiment.wait_completion() is False
        assert not browser.find_elements(By.ID, "stop")
        browser.save_screenshot(str(shots / "8-stopped.png"))
    finally:
        for name in ("4-relu", "4-tanh", "8-relu", "8-tanh"):
            (gates / name).touch()
        experiment.stop()
        experiment.dashboard.close()

    # `nasflow view`'s server of the same store is read-only: no stop control.
    with serve(tmp_path / "exps" / "browse", port=0) as view:
        browser.get(view.url + "#/trials")
        until(browser, lambda: table(browser).get(ids["4-tanh"]) == "interrupted", "the interrupted row")
        assert "read-only" in browser.find_element(By.ID, "header").text
        assert not browser.find_elements(By.ID, "stop")
        browser.save_screenshot(str(shots / "9-view.png"))
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
