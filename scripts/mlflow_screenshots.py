"""Screenshots of a sweep in the MLflow UI, taken by headless Chromium (Debian's `chromium`,
driven by Playwright): what a person sees after `trainer launch`.

    python scripts/mlflow_screenshots.py SWEEP_ID --tracking-uri http://127.0.0.1:5000 \
        --experiment pyboy-ppo-sweep --out screenshots/

Pages: the experiment's runs with the sweep expanded (`runs.png`), the chart view
(`charts.png`), the comparison on the sweep's run (`comparison.png`) and a child run's video
(`video.png`). Prints each page's visible text to a `.txt` beside its screenshot, so a test can
check that the pages loaded and name the sweep's runs. `make tools` installs Chromium.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

CHROMIUM = "/usr/bin/chromium"
# Headless in a closed network: no background connections (they would be refused, and slow).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# MLflow 3's UI opens experiments in its GenAI mode unless told otherwise: the same parameter
# `trainer` puts in the links it prints.
MODEL_TRAINING = "workflowType=machine_learning"
TIMEOUT_MS = 60_000


@dataclass
class Sweep:
    base: str
    experiment_id: str
    parent_id: str
    parent_name: str
    child_names: list[str]
    video_run_id: str | None
    video_path: str | None


def find(tracking_uri: str, sweep_id: str, experiment: str) -> Sweep:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"no experiment {experiment!r} at {tracking_uri}")
    eid = found.experiment_id
    parents = client.search_runs([eid], f"tags.`trainer.sweep_parent` = '{sweep_id}'")
    if not parents:
        raise SystemExit(f"no run of sweep {sweep_id!r} in {experiment!r}")
    parent = parents[0]
    children = client.search_runs([eid], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    video_run, video = None, None
    for child in children:
        gifs = [a.path for a in client.list_artifacts(child.info.run_id, "videos")]
        if gifs:
            video_run, video = child.info.run_id, gifs[-1]
    return Sweep(
        base=f"{tracking_uri.rstrip('/')}/#/experiments/{eid}",
        experiment_id=eid,
        parent_id=parent.info.run_id,
        parent_name=parent.info.run_name,
        child_names=sorted(c.info.run_name for c in children),
        video_run_id=video_run,
        video_path=video,
    )


def capture(sweep: Sweep, out: Path) -> dict[str, str]:
    """Screenshot each page into `out`; returns page name → visible text."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)

        def shoot(name: str, settle_ms: int = 1500) -> None:
            page.wait_for_timeout(settle_ms)  # charts and images draw after their data arrives
            page.screenshot(path=str(out / f"{name}.png"))
            texts[name] = page.locator("body").inner_text()
            (out / f"{name}.txt").write_text(texts[name])

        page.goto(f"{sweep.base}?{MODEL_TRAINING}")
        page.get_by_text(sweep.parent_name, exact=True).first.wait_for()
        close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
        if close.count():
            close.first.click()  # the assistant panel takes a third of the page
        page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
        page.get_by_text(sweep.child_names[0][:12]).first.wait_for()
        shoot("runs")
        page.locator("input[name='runs-view-mode'][value='CHART']").evaluate("e => e.click()")
        shoot("charts", settle_ms=5000)
        artifact = f"{sweep.base}/runs/{sweep.parent_id}/artifacts/comparison/comparison.png"
        page.goto(f"{artifact}?{MODEL_TRAINING}")
        page.get_by_text("comparison.png").first.wait_for()
        shoot("comparison", settle_ms=3000)
        if sweep.video_run_id and sweep.video_path:
            page.goto(
                f"{sweep.base}/runs/{sweep.video_run_id}/artifacts/{sweep.video_path}"
                f"?{MODEL_TRAINING}"
            )
            page.get_by_text(Path(sweep.video_path).name).first.wait_for()
            shoot("video", settle_ms=3000)
        browser.close()
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_id")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args(argv)
    sweep = find(args.tracking_uri, args.sweep_id, args.experiment)
    for name in capture(sweep, args.out):
        print(args.out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
