"""Vector envs: both backends against the same contract, plus the process backend's faults.

Fast (a few seconds): a toy env (tests/toy_env.py) stands in for PyBoy; the real-ROM tests at
the end use `trainer.env.make_env` when the built-in game is available.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from toy_env import ToyEnv

from trainer.bench import measure_steps_per_second
from trainer.envs.vector import (
    ProcessVecEnv,
    SerialVecEnv,
    StepResult,
    WorkerError,
    make_vec_env,
)
from trainer.errors import InvalidInput

BACKENDS = ["serial", "process"]
TESTS_DIR = Path(__file__).resolve().parent


def toy_fns(num_envs: int, **kwargs) -> list:
    return [functools.partial(ToyEnv, index=i, **kwargs) for i in range(num_envs)]


def make(backend: str, num_envs: int = 4, envs_per_worker: int | str = 2, **kwargs):
    return make_vec_env(
        toy_fns(num_envs, **kwargs), backend=backend, envs_per_worker=envs_per_worker
    )


def assert_same_results(serial, process, actions: np.ndarray) -> None:
    """Both backends reset and step to identical observations, rewards, flags and infos."""
    np.testing.assert_array_equal(serial.reset(), process.reset())
    for step, (a, b) in enumerate(zip(run(serial, actions), run(process, actions), strict=True)):
        for name in ("obs", "rewards", "terminated", "truncated"):
            np.testing.assert_array_equal(
                getattr(a, name), getattr(b, name), err_msg=f"{name} at {step}"
            )
        np.testing.assert_array_equal(a.final_obs[a.dones], b.final_obs[b.dones])
        assert a.infos == b.infos


def action_sequence(num_steps: int, num_envs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, ToyEnv.num_actions, size=(num_steps, num_envs))


def run(vec_env, actions: np.ndarray) -> list[StepResult]:
    """Step through `actions`, copying every result (they are views valid for one step)."""
    results = []
    for row in actions:
        r = vec_env.step(row)
        results.append(
            StepResult(
                r.obs.copy(),
                r.rewards.copy(),
                r.terminated.copy(),
                r.truncated.copy(),
                r.final_obs.copy(),
                r.infos,
            )
        )
    return results


def reference(num_envs: int, actions: np.ndarray, **kwargs) -> tuple[np.ndarray, list[StepResult]]:
    """The same episodes computed by hand from bare ToyEnvs, with auto-reset."""
    envs = [ToyEnv(index=i, **kwargs) for i in range(num_envs)]
    first = np.stack([env.reset() for env in envs])
    results = []
    for row in actions:
        obs, finals, rewards, terms, truncs, infos = [], [], [], [], [], []
        for i, env in enumerate(envs):
            o, r, te, tr, info = env.step(int(row[i]))
            final = o
            if te or tr:
                infos.append({**info, "env_index": i})
                o = env.reset()
            obs.append(o)
            finals.append(final)
            rewards.append(r)
            terms.append(te)
            truncs.append(tr)
        results.append(
            StepResult(
                np.stack(obs),
                np.array(rewards, np.float32),
                np.array(terms),
                np.array(truncs),
                np.stack(finals),
                infos,
            )
        )
    return first, results


def worker_shm_files(pid: int) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if name.startswith(f"trainer-vec-{pid}-")]


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie is dead; its parent (gone too) just did not reap it


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves no worker processes and no shared memory of this process behind."""
    yield
    assert wait_until(
        lambda: not [p for p in mp.active_children() if p.name.startswith("trainer-vec")], 5.0
    )
    assert worker_shm_files(os.getpid()) == []


# ---- the contract, for both backends ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_shapes_and_dtypes(backend, dtype):
    with make(backend, num_envs=4, envs_per_worker=2, dtype=dtype) as venv:
        assert venv.num_envs == 4
        assert venv.observation_shape == (6, 5)
        assert venv.observation_dtype == np.dtype(dtype)
        assert venv.num_actions == 5
        obs = venv.reset()
        assert obs.shape == (4, 6, 5) and obs.dtype == np.dtype(dtype)
        r = venv.step(np.zeros(4, dtype=np.int32))
        assert r.obs.shape == r.final_obs.shape == (4, 6, 5)
        assert r.obs.dtype == r.final_obs.dtype == np.dtype(dtype)
        assert r.rewards.shape == (4,) and r.rewards.dtype == np.float32
        assert r.terminated.dtype == r.truncated.dtype == r.dones.dtype == np.bool_
        assert venv.worker_restarts == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_reset_final_obs_and_infos_match_hand_computed_episodes(backend):
    actions = action_sequence(40, 4, seed=3)
    expected_first, expected = reference(4, actions)
    with make(backend, num_envs=4, envs_per_worker=2) as venv:
        np.testing.assert_array_equal(venv.reset(), expected_first)
        got = run(venv, actions)
    episodes = 0
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_array_equal(g.obs, e.obs, err_msg=f"obs at step {step}")
        np.testing.assert_array_equal(g.rewards, e.rewards)
        np.testing.assert_array_equal(g.terminated, e.terminated)
        np.testing.assert_array_equal(g.truncated, e.truncated)
        done = e.terminated | e.truncated
        np.testing.assert_array_equal(
            g.final_obs[done], e.final_obs[done], err_msg=f"final_obs at step {step}"
        )
        # After an ending, obs is the next episode's first observation (step counter 0).
        assert (g.obs[done][:, -1, 2] == 0).all()
        assert g.infos == e.infos
        assert [info["env_index"] for info in g.infos] == list(np.flatnonzero(done))
        episodes += len(g.infos)
    assert episodes >= 8  # both kinds of endings happened
    assert any(e.terminated.any() for e in expected) and any(e.truncated.any() for e in expected)


def test_serial_and_process_give_identical_results():
    actions = action_sequence(60, 6, seed=7)
    with (
        make("serial", num_envs=6) as serial,
        make("process", num_envs=6, envs_per_worker=3) as process,
    ):
        assert_same_results(serial, process, actions)


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_is_step_async_plus_step_wait_and_order_is_enforced(backend):
    with make(backend, num_envs=2, envs_per_worker=1) as venv:
        with pytest.raises(RuntimeError, match="reset"):
            venv.step(np.zeros(2, dtype=int))
        venv.reset()
        with pytest.raises(RuntimeError, match="without step_async"):
            venv.step_wait()
        venv.step_async(np.array([1, 2]))
        with pytest.raises(RuntimeError, match="twice"):
            venv.step_async(np.array([1, 2]))
        assert venv.step_wait().obs.shape == (2, 6, 5)
    with pytest.raises(RuntimeError, match="closed"):
        venv.reset()
    venv.close()  # idempotent


@pytest.mark.parametrize(
    "name, call, error, match",
    [
        ("empty env_fns", lambda: make_vec_env([]), ValueError, "env_fns: empty"),
        ("not callables", lambda: make_vec_env([1, 2]), TypeError, r"env_fns\[0\]"),
        (
            "not dividing",
            lambda: make_vec_env(toy_fns(4), envs_per_worker=3),
            ValueError,
            "envs_per_worker: 3 does not divide",
        ),
        (
            "zero per worker",
            lambda: make_vec_env(toy_fns(4), envs_per_worker=0),
            ValueError,
            "envs_per_worker",
        ),
        (
            "unknown backend",
            lambda: make_vec_env(toy_fns(2), backend="gpu"),
            ValueError,
            "backend: must be",
        ),
        (
            "options on serial",
            lambda: make_vec_env(toy_fns(1), worker_timeout=1),
            ValueError,
            "worker_timeout",
        ),
        (
            "bad timeout",
            lambda: ProcessVecEnv(toy_fns(2), worker_timeout=0),
            ValueError,
            "worker_timeout",
        ),
    ],
)
def test_misuse_fails_early_naming_the_argument(name, call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "actions, match",
    [
        (np.zeros(3, dtype=int), r"actions: expected shape \(4,\)"),
        (np.zeros((4, 1), dtype=int), r"actions: expected shape \(4,\)"),
        (np.zeros(4, dtype=np.float32), "actions: expected integers"),
        (np.array([0, 1, 5, 0]), r"actions: every action must be in \[0, 5\)"),
        (np.array([0, -1, 2, 0]), r"actions: every action must be in \[0, 5\)"),
    ],
)
def test_bad_actions_fail_naming_the_argument(backend, actions, match):
    with make(backend, num_envs=4) as venv:
        venv.reset()
        with pytest.raises(ValueError, match=match):
            venv.step(actions)
        venv.step(np.ones(4, dtype=np.uint8))  # still usable


@pytest.mark.parametrize("backend", BACKENDS)
def test_envs_must_agree_on_shape(backend):
    fns = [functools.partial(ToyEnv, index=0), functools.partial(ToyEnv, index=1, size=4)]
    with pytest.raises((ValueError, WorkerError), match="same observation shape"):
        make_vec_env(fns, backend=backend, envs_per_worker=2 if backend == "process" else "auto")


@pytest.mark.parametrize("backend", BACKENDS)
def test_env_constructor_failure_surfaces_with_traceback(backend):
    fns = toy_fns(4)
    fns[2] = functools.partial(ToyEnv, index=2, fail_on_create=True)
    with pytest.raises((ValueError, WorkerError), match="refusing to start") as info:
        make_vec_env(fns, backend=backend, envs_per_worker=2)
    if backend == "process":
        message = str(info.value)
        assert "worker 1 (envs 2-3" in message and "creating its environments" in message
        assert "Traceback (most recent call last)" in message and "toy_env.py" in message


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_input_inside_a_worker_is_the_same_refusal_without_traceback(backend):
    """An env that refuses its input (`InvalidInput`: exit 2) in a worker process is raised as
    such in the parent, with its message alone: the user's field is at fault, not the code."""
    fns = toy_fns(4)
    fns[3] = functools.partial(ToyEnv, index=3, refuse_input=True)
    with pytest.raises(InvalidInput) as info:
        make_vec_env(fns, backend=backend, envs_per_worker=2)
    assert not isinstance(info.value, WorkerError)
    assert str(info.value) == "toy.setting: env 3 refuses its input"


def test_env_exception_while_stepping_raises_and_closes_the_pool():
    venv = make("process", num_envs=2, envs_per_worker=1, fail_at_step=3)
    venv.reset()
    venv.step(np.zeros(2, dtype=int))
    venv.step(np.zeros(2, dtype=int))
    with pytest.raises(
        WorkerError,
        match=r"(?s)worker 0 \(env 0, pid \d+\) failed while stepping:\n.*Traceback.*failing at step 3",
    ):
        venv.step(np.zeros(2, dtype=int))
    assert venv.worker_restarts == 0
    with pytest.raises(RuntimeError, match="closed"):
        venv.step(np.zeros(2, dtype=int))


def test_worker_fails_loudly_on_unknown_command():
    with make("process", num_envs=2, envs_per_worker=1) as venv:
        venv.reset()
        worker = venv._state.workers[1]
        os.write(worker.command.fileno(), b"x")
        # It answers with its error and exits before the next command is sent: the error still
        # wins over the death (this was a flaky restart that dropped the error).
        worker.process.join(10)
        with pytest.raises(WorkerError, match="unknown command b'x'"):
            venv.reset()


# ---- faults in the process backend --------------------------------------------------------


@pytest.mark.parametrize("when", ["between steps", "during a step"])
def test_sigkilled_worker_is_replaced_and_the_others_are_unaffected(when, caplog):
    step_cost_us = 60_000 if when == "during a step" else 0  # a step of a worker: 120 ms
    actions = action_sequence(12, 4, seed=11)
    _, expected = reference(4, actions)
    with make("process", num_envs=4, envs_per_worker=2, step_cost_us=step_cost_us) as venv:
        venv.reset()
        got = run(venv, actions[:5])
        victim = venv.worker_pids()[1]
        if when == "during a step":
            venv.step_async(actions[5])
            time.sleep(0.03)
            os.kill(victim, signal.SIGKILL)
            r = venv.step_wait()
        else:
            os.kill(victim, signal.SIGKILL)
            assert wait_until(lambda: process_gone(victim))
            r = venv.step(actions[5])
        assert venv.worker_restarts == 1
        assert venv.worker_pids()[1] != victim and process_gone(victim)
        # Envs 0-1 (worker 0) carry on exactly; envs 2-3 start over, their episodes dropped.
        np.testing.assert_array_equal(r.obs[:2], expected[5].obs[:2])
        np.testing.assert_array_equal(r.rewards[:2], expected[5].rewards[:2])
        assert r.truncated[2:].all() and not r.terminated[2:].any() and (r.rewards[2:] == 0).all()
        first = np.stack([ToyEnv(index=i).reset() for i in (2, 3)])
        np.testing.assert_array_equal(r.obs[2:], first)
        np.testing.assert_array_equal(r.final_obs[2:], first)
        assert all(info["env_index"] < 2 for info in r.infos)
        got.append(
            StepResult(r.obs.copy(), r.rewards, r.terminated, r.truncated, r.final_obs, r.infos)
        )
        got += run(venv, actions[6:])
    for step in range(6, 12):
        np.testing.assert_array_equal(got[step].obs[:2], expected[step].obs[:2])
    assert "worker 1 (envs 2-3" in caplog.text and "SIGKILL" in caplog.text
    # Detection latency is measured by scripts/bench_pool.py (no timing thresholds in tests).


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_other_start_methods_survive_a_killed_worker(start_method):
    # With fork, a worker that registered the block with a resource tracker of its own would
    # have it unlinked when killed; the replacement could then not attach.
    fns = toy_fns(2)
    with make_vec_env(fns, backend="process", envs_per_worker=1, start_method=start_method) as venv:
        venv.reset()
        venv.step(np.zeros(2, dtype=int))
        os.kill(venv.worker_pids()[0], signal.SIGKILL)
        assert venv.step(np.zeros(2, dtype=int)).truncated[0]
        assert os.path.exists(f"/dev/shm/{venv.shm_name}")
        run(venv, action_sequence(10, 2))
        assert venv.worker_restarts == 1


def test_hung_worker_is_killed_after_worker_timeout_and_replaced():
    fns = toy_fns(2)
    fns[1] = functools.partial(ToyEnv, index=1, hang_at_step=3)
    with make_vec_env(fns, backend="process", envs_per_worker=1, worker_timeout=0.5) as venv:
        venv.reset()
        run(venv, action_sequence(2, 2))
        start = time.perf_counter()
        r = venv.step(np.zeros(2, dtype=int))
        # It waited for worker_timeout (how much longer is a benchmark's business, not a test's).
        assert time.perf_counter() - start >= 0.5
        assert venv.worker_restarts == 1 and r.truncated[1] and not r.truncated[0]


def test_too_many_restarts_give_up_with_worker_error():
    with make_vec_env(toy_fns(2), backend="process", envs_per_worker=1, max_restarts=0) as venv:
        venv.reset()
        os.kill(venv.worker_pids()[0], signal.SIGKILL)
        with pytest.raises(WorkerError, match="max_restarts=0"):
            venv.step(np.zeros(2, dtype=int))


def test_worker_that_keeps_crashing_fails_naming_its_envs_within_the_window():
    """A ROM that crashes the emulator every time: restarted `max_restarts` times, then a clear
    failure, not an endless loop; the pool is gone."""
    fns = toy_fns(2)
    fns[1] = functools.partial(ToyEnv, index=1, crash_at_step=2)
    venv = make_vec_env(fns, backend="process", envs_per_worker=1, max_restarts=2)
    pids = venv.worker_pids()
    venv.reset()
    with pytest.raises(WorkerError) as raised:
        for _ in range(20):
            venv.step(np.zeros(2, dtype=int))
    message = str(raised.value)
    assert "worker 1 (env 1," in message and "was killed by SIGSEGV" in message
    assert "restart 3 within restart_window=600 s (max_restarts=2)" in message
    assert venv.worker_restarts == 3
    assert wait_until(lambda: all(process_gone(pid) for pid in pids))
    assert not os.path.exists(f"/dev/shm/{venv.shm_name}")


def test_restarts_older_than_the_window_are_forgiven():
    """The same crashing env with a window shorter than one restart: every restart is the only
    one in its window, so a rare crash over a long run never adds up to a failure."""
    fns = [functools.partial(ToyEnv, index=0, crash_at_step=2)]
    with make_vec_env(
        fns, backend="process", envs_per_worker=1, max_restarts=1, restart_window=1e-6
    ) as venv:
        venv.reset()
        results = run(venv, action_sequence(12, 1))
        assert venv.worker_restarts == 6  # a crash every second step, each one restarted
        assert sum(bool(r.truncated[0]) for r in results) >= 6


def test_worker_that_keeps_hanging_fails_after_its_restarts():
    """A real hang (the env sleeps inside step): killed after worker_timeout, restarted once,
    hangs again: the pool gives up naming the timeout."""
    fns = [functools.partial(ToyEnv, index=0, hang_at_step=2)]
    with make_vec_env(
        fns, backend="process", envs_per_worker=1, worker_timeout=0.3, max_restarts=1
    ) as venv:
        venv.reset()
        with pytest.raises(
            WorkerError, match=r"did not answer within worker_timeout=0.3 s.*restart 2"
        ):
            run(venv, action_sequence(6, 1))
        assert venv.worker_restarts == 2


def test_close_and_exceptions_leave_no_processes_or_shared_memory():
    shm_before = set(os.listdir("/dev/shm"))
    venv = make("process", num_envs=4, envs_per_worker=2)
    pids, name = venv.worker_pids(), venv.shm_name
    assert os.path.exists(f"/dev/shm/{name}") and len(pids) == 2
    venv.reset()
    venv.close()
    assert all(process_gone(pid) for pid in pids) and not os.path.exists(f"/dev/shm/{name}")

    with pytest.raises(RuntimeError, match="boom"):
        with make("process", num_envs=2, envs_per_worker=1) as venv:
            pids, name = venv.worker_pids(), venv.shm_name
            r = venv.reset()  # a view into shared memory still alive after close: must not matter
            raise RuntimeError("boom")
    assert all(process_gone(pid) for pid in pids) and not os.path.exists(f"/dev/shm/{name}")
    assert r.shape == (2, 6, 5)
    assert not {f for f in set(os.listdir("/dev/shm")) - shm_before if f.startswith("trainer-vec-")}


def test_keyboard_interrupt_while_waiting_closes_the_pool():
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with make("process", num_envs=2, envs_per_worker=1, step_cost_us=500_000) as venv:
            venv.reset()
            pids = venv.worker_pids()
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            with pytest.raises(KeyboardInterrupt):
                venv.step(np.zeros(2, dtype=int))
            assert all(process_gone(pid) for pid in pids)
            assert not os.path.exists(f"/dev/shm/{venv.shm_name}")
            with pytest.raises(RuntimeError, match="closed"):
                venv.step(np.zeros(2, dtype=int))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


CHILD = textwrap.dedent(
    """
    import functools, os, sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from toy_env import ToyEnv
    from trainer.envs.vector import make_vec_env

    if __name__ == "__main__":
        # A step that takes a while, as an emulator's: a dead forkserver's sentinel then wins.
        sleep_us = 20000 if sys.argv[1] == "group-sigterm" else 0
        fns = [functools.partial(ToyEnv, index=i, step_sleep_us=sleep_us) for i in range(4)]
        venv = make_vec_env(fns, envs_per_worker=2)
        venv.reset()
        print(venv.shm_name, *venv.worker_pids(), flush=True)
        mode = sys.argv[1]
        if mode == "exit-without-close":
            raise KeyboardInterrupt
        if mode == "self-sigkill":
            os.kill(os.getpid(), 9)
        stopping = []
        if mode == "group-sigterm":  # the parent's to handle, as `trainer run` does
            import signal

            signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        while not stopping:  # wait for Ctrl-C (or SIGTERM) while stepping
            venv.step(np.zeros(4, dtype=int))
        time.sleep(0.5)  # a checkpoint's time: the signal has reached the whole group
        venv.step(np.zeros(4, dtype=int))  # on to the rollout's end: a dead forkserver's
        # sentinels said every worker had crashed (code 255), and the pool restarted them all
        alive = [open(f"/proc/{{pid}}/stat").read().split()[2] != "Z" for pid in venv.worker_pids()]
        print("workers alive when the parent handles SIGTERM:", all(alive), flush=True)
        raise SystemExit(143)
    """
)


@pytest.mark.parametrize("mode", ["exit-without-close", "ctrl-c", "self-sigkill", "group-sigterm"])
def test_parent_exit_interrupt_or_crash_leaves_nothing_behind(mode, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS_DIR)))
    child = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal job
    )
    try:
        name, *pids = child.stdout.readline().split()
        assert name.startswith("trainer-vec-") and len(pids) == 2, child.stderr.read()
        if mode == "ctrl-c":
            time.sleep(0.3)
            os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        if mode == "group-sigterm":
            time.sleep(0.3)
            os.killpg(child.pid, signal.SIGTERM)  # `timeout`, `kill -- -PGID`, Slurm's scancel
        child.wait(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read()
    assert wait_until(lambda: all(process_gone(int(pid)) for pid in pids), 5.0), stderr
    assert wait_until(lambda: not os.path.exists(f"/dev/shm/{name}"), 5.0), stderr
    assert "Process trainer-vec-worker" not in stderr, stderr  # no worker tracebacks
    if mode != "self-sigkill":
        assert "leaked shared_memory" not in stderr, stderr  # closed by us, not the tracker
    if mode == "group-sigterm":
        assert child.returncode == 143, stderr
        assert "workers alive when the parent handles SIGTERM: True" in child.stdout.read()
        assert "starting a new one" not in stderr, stderr  # no worker restarted as crashed


def test_two_workers_start_as_separate_processes():
    # How fast they start is `trainer bench`'s figure (no timing thresholds in tests).
    with make("process", num_envs=2, envs_per_worker=1) as venv:
        venv.reset()
        pids = venv.worker_pids()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        assert not any(process_gone(pid) for pid in pids)


def test_auto_backend_and_envs_per_worker(monkeypatch):
    from trainer.envs.vector import layout

    monkeypatch.setattr(layout, "available_cpus", lambda: 2)
    with make_vec_env(toy_fns(1)) as venv:
        assert isinstance(venv, SerialVecEnv)
    with make_vec_env(toy_fns(5)) as venv:
        assert isinstance(venv, ProcessVecEnv)
        assert venv.num_workers == 2 and venv.envs_per_worker == 3
        venv.reset()
        assert venv.step(np.zeros(5, dtype=int)).obs.shape == (5, 6, 5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_measure_steps_per_second(backend):
    with make(backend, num_envs=2, envs_per_worker=1) as venv:
        assert measure_steps_per_second(venv, steps=20) > 0


# ---- backend "fastest": both timed, the faster kept ------------------------------------------


@pytest.mark.parametrize(
    "env_kwargs, winner",
    [
        ({}, SerialVecEnv),  # no work per step: a worker's round trip is all a process adds
        ({"step_sleep_us": 3000}, ProcessVecEnv),  # 4 envs waiting 3 ms: in parallel 4× less
    ],
)
def test_fastest_keeps_the_faster_backend_which_steps_as_the_others_do(env_kwargs, winner):
    ready, closed, probed = [], [], []

    def policy(shape, num_actions):
        probed.append((shape, num_actions))
        return lambda obs: np.zeros(len(obs), dtype=int)

    fns = toy_fns(4, **env_kwargs)
    pool = make_vec_env(
        fns,
        backend="fastest",
        envs_per_worker=1,
        on_env_ready=ready.append,
        on_env_closed=closed.append,
        probe_policy=policy,
    )
    with pool:
        assert isinstance(pool, winner), pool.backend_choice
        assert pool.backend_choice.backend == {SerialVecEnv: "serial"}.get(winner, "process")
        assert probed == [((6, 5), ToyEnv.num_actions)]  # the policy saw the envs' shapes
        assert sorted(ready) == [0, 1, 2, 3] and closed == []  # one line per env, none closed
        with make("serial", num_envs=4) as reference:
            # The probe's steps leave no trace: a reset restores every env's start.
            assert_same_results(reference, pool, action_sequence(30, 4, seed=3))
    assert sorted(closed) == [0, 1, 2, 3]


def test_fastest_with_one_env_is_serial_without_probing():
    with make_vec_env(toy_fns(1), backend="fastest") as pool:
        assert isinstance(pool, SerialVecEnv) and pool.backend_choice is None


def test_fastest_closes_both_pools_when_an_env_fails_during_the_probe():
    with pytest.raises(RuntimeError, match="failing at step 3 as asked"):
        make_vec_env(toy_fns(2, fail_at_step=3), backend="fastest", envs_per_worker=1)
    assert mp.active_children() == []


# ---- real emulators (the built-in game) ---------------------------------------------------


def real_fns(num_envs: int, **env):
    from trainer.envs.env import make_env
    from trainer.spec import JobSpec

    spec = JobSpec(name="vector-test", env={"episode_length": 30, **env})
    return [functools.partial(make_env, spec, i) for i in range(num_envs)]


@pytest.mark.parametrize("obs_type", ["tiles", "pixels"])
def test_real_envs_serial_and_process_identical(obs_type):
    fns = real_fns(2, obs={"type": obs_type})
    with make_vec_env(fns, backend="process", envs_per_worker=1) as process:
        with make_vec_env(fns, backend="serial") as serial:
            assert process.observation_shape == serial.observation_shape
            actions = np.random.default_rng(0).integers(0, serial.num_actions, size=(70, 2))
            assert_same_results(serial, process, actions)
    # Start-up time is measured by `trainer bench` (no timing thresholds in tests: shared machines).


def test_real_env_reset_restores_the_exact_start():
    with make_vec_env(real_fns(1), backend="serial") as venv:
        actions = np.random.default_rng(1).integers(0, venv.num_actions, size=(25, 1))
        first = venv.reset().copy()
        trajectory = [r.obs for r in run(venv, actions)]
        np.testing.assert_array_equal(venv.reset(), first)
        again = [r.obs for r in run(venv, actions)]
        for step, (a, b) in enumerate(zip(trajectory, again, strict=True)):
            np.testing.assert_array_equal(a, b, err_msg=f"obs at step {step} after reset")


def test_the_forkserver_ignores_sigterm_and_only_the_forkserver():
    import importlib

    import psutil

    from trainer.envs.vector import forkserver_signals

    before = signal.getsignal(signal.SIGTERM)
    importlib.reload(forkserver_signals)  # imported here, outside the forkserver: no change
    assert signal.getsignal(signal.SIGTERM) == before
    with make("process", num_envs=2, envs_per_worker=1) as venv:
        venv.reset()
        servers = [
            child.pid
            for child in psutil.Process().children()
            if "multiprocessing.forkserver" in " ".join(child.cmdline())
        ]
        assert servers, "a forkserver was started"
        for pid in [*servers, *venv.worker_pids()]:
            status = Path(f"/proc/{pid}/status").read_text()
            ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
            assert int(ignored.split()[1], 16) & (1 << (signal.SIGTERM - 1)), (pid, ignored)
