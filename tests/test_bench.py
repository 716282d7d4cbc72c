"""`trainer bench --quick`: a smoke run of every stage (figures are not asserted: no timing
thresholds in tests, the machines are shared and noisy)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`scripts/<name>` with `args` in a fresh interpreter, its output captured."""
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / name
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
    )


def test_bench_quick_prints_tables_writes_json_and_logs_to_mlflow(tmp_path, mlflow_server):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "bench",
            "--quick",
            "--envs",
            "1,2",
            "--json",
            str(out),
            "--mlflow",
            "bench-tests",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for title in ("Scaling", "Each stage against its baseline", "End to end and resources"):
        assert title in proc.stdout
    report = json.loads(out.read_text())
    assert [row["num_envs"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        for key in ("raw_fps", "pool_sps", "rollout_sps", "train_sps"):
            assert row[key] > 0 and math.isfinite(row[key]), key
        assert row["pool_fps"] == pytest.approx(row["pool_sps"] * report["frame_skip"])
    assert report["learner_samples_per_second"] > 0
    # Every device present: here the CPU (a GPU machine adds cuda:N rows). The spec's own
    # device is the figure above, not measured a second time.
    assert report["learner_by_device"] == {"cpu": report["learner_samples_per_second"]}
    assert 0 < report["memory_per_env_mb"] < 1024
    assert report["startup_seconds"] > 0 and report["trainer_startup_seconds"] > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("bench-tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["pool_sps_e2"] == pytest.approx(report["rows"][1]["pool_sps"])
    assert run.data.metrics["memory_per_env_mb"] == pytest.approx(report["memory_per_env_mb"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["bench.json"]


@pytest.mark.parametrize(
    ("device", "by_device", "rows"),
    [
        ("cpu", {"cpu": 1.0}, []),
        ("cpu", {"cpu": 1.0, "cuda:0": 2.0}, ["on cuda:0"]),
        ("cuda", {"cpu": 1.0, "cuda:0": 2.0}, ["on cpu"]),
    ],
)
def test_learner_rows_name_each_device_once(device, by_device, rows):
    from pathlib import Path

    from trainer.bench import render_tables
    from trainer.bench.report import BenchReport

    text = (Path(__file__).parents[1] / "docs" / "bench.json").read_text()
    report = BenchReport.from_json(text)
    report.device, report.learner_by_device = device, by_device
    labels = [str(cell).strip() for t in render_tables(report) for cell in t.columns[0]._cells]
    assert [label for label in labels if label.startswith("on ")] == rows

    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "bench", "--envs", "1,x"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Invalid value for '--envs'" in proc.stderr


def test_bench_peer_trains_sb3_beside_ours_on_each_builtin_game(tmp_path):
    """`--peer`: SB3's PPO and ours on the same env and settings, per built-in game, in one
    run; the figures are real (positive, finite), not asserted against each other."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: peer\nenv: {num_envs: 2, episode_length: 20}\nmlflow: {enabled: false}\n"
    )
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "bench", str(spec), "--quick", "--envs", "2"]
        + ["--no-train-sweep", "--peer", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Steps/s against Stable-Baselines3 PPO" in proc.stdout
    peer = json.loads(out.read_text())["peer"]
    assert [game["game"] for game in peer] == ["builtin:dungeon", "builtin:cavern"]
    for game in peer:
        assert game["seeds"] == [1]
        for key in ("ours_sps", "peer_sps", "raw_fps", "ours_fps"):
            assert game[key] > 0 and math.isfinite(game[key]), key
        # 512 steps of 20-step episodes on 2 envs: about 25 episodes each, so both returns and
        # both times to the level (the lower final return) exist.
        for key in ("ours_return", "peer_return", "ours_seconds_to_threshold"):
            assert math.isfinite(game[key]), key
        assert game["threshold"] == min(game["ours_return"], game["peer_return"])


def test_bench_peer_rejects_bad_seeds():
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "bench", "--peer", "1,x"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--peer" in proc.stderr and "1,x" in proc.stderr


def test_bench_refuses_a_rom_it_cannot_use_before_measuring(tmp_path):
    """Found by probing: the raw-emulator stage's processes died on the ROM and the bench then
    waited 600 s for their figures."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: b\ngame: {rom: /proc/self/mem, adapter: generic}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "bench", str(spec), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "game.rom: cannot read /proc/self/mem" in proc.stderr


def test_a_raw_emulator_process_that_dies_ends_the_stage_at_once():
    import multiprocessing as mp

    from trainer.bench.stages import _gather
    from trainer.errors import TrainerError

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=os._exit, args=(3,)), ctx.Process(target=time.sleep, args=(60,))]
    for process in procs:
        process.start()
    with pytest.raises(TrainerError, match="a raw-emulator process exited with code 3"):
        _gather(procs, ctx.Queue(), timeout_s=120)
    procs[1].join(timeout=10)
    assert procs[1].exitcode is not None, "the other process is stopped, not left waiting"


def test_double_buffer_bench_runs_both_collections_on_each_game():
    """scripts/bench_double_buffer.py: the real games, both ways of collecting, a ratio row per
    game (a smoke run: a few steps, figures not asserted)."""
    proc = run_script(
        "bench_double_buffer.py", "--envs", "2", "--steps", "5", "--rounds", "1", timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.endswith("×")]
    assert [row[0] for row in rows] == ["quickstart", "cavern"], proc.stdout


def test_learner_variants_bench_times_each_variant_beside_eager():
    """scripts/bench_learner_variants.py: the spec's update and policy call, eager on one
    thread, on all CPUs, compiled (Inductor builds C++ kernels here) and under bf16 autocast,
    next to a spinning neighbour; a row per variant with its ratio (a smoke run: figures not
    asserted)."""
    args = ["--rounds", "1", "--updates", "1", "--calls", "5", "--busy", "1"]
    proc = run_script("bench_learner_variants.py", *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.endswith("×")]
    assert [row.split()[0] for row in rows] == ["update"] * 4 + ["policy"] * 2, proc.stdout
    assert rows[0].endswith("1.00×") and "1 spinning neighbour" in proc.stdout


def test_backend_bench_trains_each_backend_on_each_game():
    """scripts/bench_backend.py: real training with auto, serial and fastest on both built-in
    games, a row per backend with its ratio and, for fastest, the backend kept (a smoke run:
    figures not asserted)."""
    proc = run_script("bench_backend.py", "--steps", "256", "--rounds", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if "×" in line]
    assert [(row[0], row[1]) for row in rows] == [
        (game, backend)
        for game in ("train-20k", "cavern")
        for backend in ("auto", "serial", "fastest")
    ], proc.stdout
    assert all(row[-1] in ("serial", "process") for row in rows if row[1] == "fastest")


def test_gif_bench_writes_each_games_episode_both_ways_with_the_same_pixels():
    """scripts/bench_gif.py: a recorded episode of each built-in game written by the writer
    before and ours, decoded and compared (the script exits non-zero if the pixels differ); a
    row per writer and game (a smoke run: figures not asserted)."""
    proc = run_script("bench_gif.py", "--steps", "5", "--rounds", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.endswith("×")]
    assert [(row[0], row[1]) for row in rows] == [
        ("builtin:dungeon", "quantized"),
        ("builtin:dungeon", "palette"),
        ("builtin:cavern", "quantized"),
        ("builtin:cavern", "palette"),
    ], proc.stdout
    assert all(row[2] == "6" for row in rows), proc.stdout  # the start screen and 5 steps


def test_startup_bench_starts_trainer_run_with_and_without_the_preload():
    """scripts/bench_startup.py: fresh `trainer run` processes to their first rollout, the
    baseline without the preload; a row per way with its ratio (figures not asserted)."""
    proc = run_script("bench_startup.py", "--rounds", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.endswith("×")]
    assert [row.split("  ")[0] for row in rows] == ["import at the optimizer", "preloaded"]
    assert rows[0].endswith("1.00×"), proc.stdout
