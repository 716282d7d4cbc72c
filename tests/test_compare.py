"""`trainer compare`: a sweep's runs side by side, from a real MLflow server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trainer.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture()
def sweep(mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment("compare-tests")
    for envs, sps in ((1, 700.0), (2, 1300.0)):
        run = client.create_run(
            experiment_id,
            run_name=f"sw-e{envs}",
            tags={"sweep_id": "sw-1234", "num_envs": str(envs)},
        )
        for i in range(30):
            client.log_metric(
                run.info.run_id, "charts/episodic_return", float(i * envs), step=100 * (i + 1)
            )
        client.log_metric(run.info.run_id, "perf/sps", sps, step=3000)
        client.set_terminated(run.info.run_id, "FINISHED")
    other = client.create_run(experiment_id, run_name="unrelated", tags={"sweep_id": "other"})
    client.set_terminated(other.info.run_id, "FINISHED")
    return client, experiment_id


def test_compare_prints_table_writes_plot_and_logs_run(tmp_path, mlflow_server, sweep):
    client, experiment_id = sweep
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "sw-1234",
            "--tracking-uri",
            mlflow_server,
            "--experiment",
            "compare-tests",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "sw-e1" in result.output and "sw-e2" in result.output and "unrelated" not in result.output
    )
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert [(r["num_envs"], r["sps"]) for r in rows] == [(1, 700.0), (2, 1300.0)]
    assert rows[1]["return_last10"] == pytest.approx(sum(range(20, 30)) * 2 / 10)
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = client.search_runs(
        [experiment_id], filter_string="tags.`trainer.compare_of` = 'sw-1234'"
    )
    assert len(logged) == 1
    artifacts = {a.path for a in client.list_artifacts(logged[0].info.run_id, "comparison")}
    assert artifacts == {"comparison/comparison.png", "comparison/comparison.json"}
    assert logged[0].data.metrics["sps_e2"] == 1300.0
    # Comparing again updates the same comparison run instead of adding one.
    again = CliRunner().invoke(
        main, ["compare", "sw-1234", "--tracking-uri", mlflow_server, "--out", str(tmp_path)]
    )
    assert again.exit_code == 0, again.output
    assert (
        len(
            client.search_runs(
                [experiment_id], filter_string="tags.`trainer.compare_of` = 'sw-1234'"
            )
        )
        == 1
    )


def test_unknown_sweep_and_experiment_fail_clearly(tmp_path, mlflow_server):
    result = CliRunner().invoke(
        main, ["compare", "nope", "--tracking-uri", mlflow_server, "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and "no runs tagged sweep_id='nope'" in result.output
    result = CliRunner().invoke(
        main,
        [
            "compare",
            "nope",
            "--tracking-uri",
            mlflow_server,
            "--experiment",
            "missing",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "--experiment: no experiment named 'missing'" in result.output
