"""`trainer compare`: a sweep's runs side by side, from a real MLflow server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trainer.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
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
    # 2 replicas × 1 env: the same total as 1 × 2 (its params are the flattened spec)
    group = client.create_run(
        experiment_id, run_name="sw-e1x2", tags={"sweep_id": "sw-1234", "num_envs": "1"}
    )
    client.log_param(group.info.run_id, "distributed.replicas", "2")
    client.log_metric(group.info.run_id, "charts/episodic_return", 1.0, step=100)
    client.log_metric(group.info.run_id, "perf/sps", 1250.0, step=3000)
    client.set_terminated(group.info.run_id, "FINISHED")
    other = client.create_run(experiment_id, run_name="unrelated", tags={"sweep_id": "other"})
    client.set_terminated(other.info.run_id, "FINISHED")
    return client, experiment_id


def compare(*args: str):
    # No $COLUMNS: output to a pipe, as a script or CI log gets it (tables uncut).
    return CliRunner(env={"COLUMNS": None}).invoke(main, ["compare", *args])


def test_tables_on_a_pipe_are_not_cut_to_80_columns(monkeypatch, capsys):
    from rich.table import Table

    from trainer.cli.common import stdout_console

    table = Table("Run", "Status")
    table.add_row("quickstart-e1-r" + "0123456789abcdef" * 5, "FINISHED")
    monkeypatch.delenv("COLUMNS", raising=False)
    stdout_console().print(table)
    assert "0123456789abcdef" * 5 in capsys.readouterr().out  # Rich's default: 80, cut with …
    monkeypatch.setenv("COLUMNS", "60")  # the user's own width still wins
    stdout_console().print(table)
    assert "0123456789abcdef" * 5 not in capsys.readouterr().out


def test_compare_prints_table_writes_plots_and_logs_to_the_sweep_run(
    tmp_path, mlflow_server, sweep
):
    client, experiment_id = sweep
    result = compare(
        "sw-1234", "--tracking-uri", mlflow_server, "--experiment", "compare-tests",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sw-e1" in result.output and "sw-e2" in result.output
    assert "unrelated" not in result.output
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert [(r["num_envs"], r["replicas"], r["total_envs"], r["sps"]) for r in rows] == [
        (1, 1, 1, 700.0),
        (2, 1, 2, 1300.0),
        (1, 2, 2, 1250.0),
    ]
    assert "sw-e1x2" in result.output
    assert rows[1]["return_last10"] == pytest.approx(sum(range(20, 30)) * 2 / 10)
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Logged to the sweep's parent run (created here: these runs predate parent runs), not to a
    # run of its own beside the training runs.
    parents = client.search_runs(
        [experiment_id], filter_string="tags.`trainer.sweep_parent` = 'sw-1234'"
    )
    assert len(parents) == 1
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "comparison")}
    assert artifacts == {
        "comparison/comparison.png",
        "comparison/comparison.json",
        "comparison/comparison.md",
    }
    assert parents[0].data.metrics["sps_e2"] == 1300.0
    assert parents[0].data.metrics["sps_e1x2"] == 1250.0
    # Comparing again logs to the same parent run, and the parent is never compared itself.
    again = compare("sw-1234", "--tracking-uri", mlflow_server, "--out", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert "sw-1234 " not in again.output.replace("Sweep sw-1234", "")
    search = "tags.`trainer.sweep_parent` = 'sw-1234'"
    assert len(client.search_runs([experiment_id], filter_string=search)) == 1


def test_compare_markdown_run_ids_and_experiment(tmp_path, mlflow_server, sweep):
    client, experiment_id = sweep
    runs = client.search_runs([experiment_id], filter_string="tags.sweep_id = 'sw-1234'")
    ids = sorted(r.info.run_id for r in runs)
    by_ids = compare(*ids, "--tracking-uri", mlflow_server, "--out", str(tmp_path),
                     "--format", "markdown")  # fmt: skip
    assert by_ids.exit_code == 0, by_ids.output
    table = [line for line in by_ids.output.splitlines() if line.startswith("|")]
    assert table[0].startswith("| Envs | Replicas | Total envs | Run |")
    assert len(table) == 2 + 3  # header, rule, 3 runs
    assert "| 2 | 1 | 2 | sw-e2 |" in by_ids.output and "| 1 | 2 | 2 | sw-e1x2 |" in by_ids.output
    whole = compare("--experiment", "compare-tests", "--tracking-uri", mlflow_server,
                    "--out", str(tmp_path))  # fmt: skip
    assert whole.exit_code == 0, whole.output
    names = {row["run"] for row in json.loads((tmp_path / "comparison.json").read_text())}
    assert names == {
        "unrelated",
        "sw-e1",
        "sw-e2",
        "sw-e1x2",
    }  # every training run, no sweep parent


def test_unknown_sweep_and_experiment_fail_clearly(tmp_path, mlflow_server):
    result = compare("nope", "--tracking-uri", mlflow_server, "--out", str(tmp_path))
    assert result.exit_code == 1 and "no runs tagged sweep_id='nope'" in result.output
    assert compare("--tracking-uri", mlflow_server).exit_code == 2
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


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "sw-1234"],
        ["compare", "--experiment", "x"],
        ["play", "0123456789abcdef0123456789abcdef"],
    ],
)
def test_a_server_that_does_not_answer_is_said_at_once(tmp_path, monkeypatch, args):
    # MLflow's client retried each request for ~4 minutes, then said "no MLflow run".
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*args, "--tracking-uri", uri])
    assert result.exit_code == 1, result.output
    assert f"error: MLflow at {uri} is unreachable (connection refused)" in result.output


def test_any_http_answer_counts_as_a_reachable_server():
    import http.server
    import threading

    from trainer.tracking.client import check_server_reachable

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:  # no /health behind this proxy-like server: a 501 answer, still a server
        check_server_reachable(f"http://127.0.0.1:{server.server_port}")
        # A TLS handshake that fails answered too: MLflow's TLS settings decide, not this probe.
        check_server_reachable(f"https://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    check_server_reachable("sqlite:///nowhere.db")  # not a server: nothing to reach
