"""The job spec: bad input gets exit 2 and a message naming the file, line and key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trainer.cli import main
from trainer.spec import ENV_OVERRIDES, JobSpec, SpecError, load_spec, spec_hash, training_hash

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
name: quickstart
seed: 1
game:
  rom: builtin:dungeon
env:
  num_envs: 2
ppo:
  total_steps: 20000
  batch_size: 128
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


# name, YAML, expected message parts (each must appear, in the one error output)
BAD_SPECS = [
    (
        "wrong type",
        GOOD.replace("total_steps: 20000", "total_steps: lots"),
        ["spec.yaml:8:", "ppo.total_steps", "'lots'"],
    ),
    (
        "out of range",
        GOOD.replace("total_steps: 20000", "total_steps: 20000\n  update_epochs: -1"),
        ["spec.yaml:9:", "ppo.update_epochs: must be ≥ 1 (got -1)"],
    ),
    (
        "unknown key with suggestion",
        GOOD.replace("  num_envs: 2", "  num_envs: 2\n  frame_skp: 4"),
        ["spec.yaml:7:", "env.frame_skp", "did you mean 'frame_skip'"],
    ),
    ("unknown top-level key", GOOD + "ppo_settings: {}\n", ["ppo_settings", "did you mean 'ppo'"]),
    (
        "bad name",
        GOOD.replace("name: quickstart", "name: Quick_Start"),
        ["spec.yaml:1:", "name:", "DNS-1123", "'Quick_Start'"],
    ),
    (
        "name too long",
        GOOD.replace("name: quickstart", "name: " + "a" * 41),
        ["name:", "at most 40"],
    ),
    ("missing name", GOOD.replace("name: quickstart\n", ""), ["name: required key is missing"]),
    (
        "zero envs",
        GOOD.replace("num_envs: 2", "num_envs: 0"),
        ["spec.yaml:6:", "env.num_envs", "≥ 1 or 'auto'", "(got 0)"],
    ),
    (
        "batch larger than rollout",
        GOOD.replace("batch_size: 128", "batch_size: 1000"),
        ["spec.yaml:9:", "ppo.batch_size: must not exceed", "2 × 128 = 256; got 1000"],
    ),
    (
        "sweep count makes batch too big",
        GOOD.replace("batch_size: 128", "batch_size: 256") + "sweep: {num_envs: [1, 2]}\n",
        ["sweep.num_envs", "1 × 128 = 128; got 256"],
    ),
    (
        "negative total steps",
        GOOD.replace("total_steps: 20000", "total_steps: 0"),
        ["ppo.total_steps: must be ≥ 1 (got 0)"],
    ),
    (
        "bad observation type",
        GOOD.replace("  num_envs: 2", "  num_envs: 2\n  obs: {type: rgb}"),
        ["env.obs.type", "'tiles' or 'pixels'", "'rgb'"],
    ),
    (
        "unknown action",
        GOOD.replace("  num_envs: 2", "  num_envs: 2\n  actions: [up, jump]"),
        ["env.actions.1", "'jump'"],
    ),
    (
        "duplicate actions",
        GOOD.replace("  num_envs: 2", "  num_envs: 2\n  actions: [up, up]"),
        ["env.actions", "duplicate actions: up"],
    ),
    (
        "press longer than skip",
        GOOD.replace("  num_envs: 2", "  num_envs: 2\n  frame_skip: 4\n  press_frames: 6"),
        ["spec.yaml:8:", "env.press_frames: must not exceed env.frame_skip (4; got 6)"],
    ),
    (
        "bad memory quantity",
        GOOD + "resources: {memory_per_env: 256MB}\n",
        ["resources.memory_per_env: must be a Kubernetes quantity such as 512Mi", "256MB"],
    ),
    (
        "bad namespace",
        GOOD + "kubernetes: {namespace: My_NS}\n",
        ["kubernetes.namespace", "DNS-1123"],
    ),
    (
        "duplicate sweep counts",
        GOOD + "sweep: {num_envs: [1, 1]}\n",
        ["sweep.num_envs", "distinct"],
    ),
    (
        "bad device",
        GOOD.replace("  batch_size: 128", "  batch_size: 128\n  device: tpu"),
        ["ppo.device", "auto, cpu, cuda"],
    ),
    (
        "gamma out of range",
        GOOD.replace("  batch_size: 128", "  batch_size: 128\n  gamma: 1.5"),
        ["ppo.gamma", "≤ 1", "1.5"],
    ),
    (
        "duplicate sweep replicas",
        GOOD + "sweep: {replicas: [2, 2]}\n",
        ["sweep.replicas", "distinct"],
    ),
    (
        "zero replicas in a sweep",
        GOOD + "sweep: {replicas: [0, 2]}\n",
        ["sweep.replicas", "integer ≥ 1"],
    ),
    (
        "total_envs no pair reaches",
        GOOD + "sweep: {num_envs: [2, 4], replicas: [1, 2], total_envs: 6}\n",
        ["sweep.total_envs", "num_envs [2, 4] and replicas [1, 2]", "= 6"],
    ),
    (
        "batch not split evenly over a swept replica count",
        GOOD + "sweep: {num_envs: [4], replicas: [1, 3]}\n",
        ["ppo.batch_size", "multiple of distributed.replicas", "128 and 3"],
    ),
    (
        "batch over the rollout of every replica",
        GOOD.replace("batch_size: 128", "batch_size: 512")
        + "sweep: {num_envs: [1, 2], replicas: [2]}\n",
        ["ppo.batch_size", "2 replicas × sweep.num_envs × ppo.rollout_steps", "got 512"],
    ),
    (
        "workers of unequal size (found by probing: a ValueError traceback at run time)",
        GOOD.replace("num_envs: 2", "num_envs: 3\n  envs_per_worker: 2"),
        ["env.envs_per_worker: 2 does not divide env.num_envs [3]", "or 'auto'"],
    ),
    (
        "a swept count workers cannot share",
        GOOD.replace("num_envs: 2", "num_envs: 2\n  envs_per_worker: 2")
        + "sweep: {num_envs: [2, 4, 6, 7]}\n",
        ["env.envs_per_worker: 2 does not divide sweep.num_envs [7]"],
    ),
    (
        "an infinite learning rate (trained to NaN weights)",
        GOOD + "  learning_rate: .inf\n",
        ["ppo.learning_rate: must be a finite number"],
    ),
    (
        "a NaN reward weight",
        GOOD.replace("builtin:dungeon", "builtin:dungeon\n  reward: {coin: .nan}"),
        ["game.reward.coin", "finite"],
    ),
    (
        "a seed NumPy cannot take",
        GOOD.replace("seed: 1", "seed: 4294967296"),
        ["seed: must be ≤ 4294967295"],
    ),
    (
        "a CPU request under Kubernetes' 1m (rendered as cpu: '0')",
        GOOD + "resources: {cpu_per_env: 0.0001}\n",
        ["resources.cpu_per_env: must be ≥ 0.001 (got 0.0001)"],
    ),
    (
        "memory as a bare YAML number (said 'must be a valid string')",
        GOOD + "resources: {memory_per_env: 512}\n",
        ["resources.memory_per_env: must be a Kubernetes quantity with its unit", "(got 512)"],
    ),
    (
        "memory in thousandths of a byte (rendered as memory: '0')",
        GOOD + "kubernetes: {shm_size: 1m}\n",
        ["kubernetes.shm_size: must be at least 1 byte"],
    ),
    ("not a mapping", "- just\n- a list\n", ["spec.yaml:1:", "must be a mapping"]),
    ("invalid yaml", "name: [unclosed\n", ["spec.yaml:", "invalid YAML"]),
    (
        "a key given twice (YAML would keep the last silently)",
        GOOD + "env:\n  num_envs: 8\n",
        ["spec.yaml:", ": env: given twice (first on line", "keeps only the last"],
    ),
    (
        "a nested key given twice",
        GOOD + "  total_steps: 5\n",
        ["spec.yaml:10: ppo.total_steps: given twice (first on line 8)", "keeps only the last"],
    ),
    ("section of wrong type", GOOD + "mlflow: yes\n", ["mlflow", "valid dictionary"]),
    ("empty ROM", GOOD.replace("rom: builtin:dungeon", "rom: ''"), ["game.rom: must not be empty"]),
    (
        "empty save state",
        GOOD.replace("rom: builtin:dungeon", "rom: builtin:dungeon\n  state: ''"),
        ["game.state: must not be empty"],
    ),
]


@pytest.mark.parametrize("name, text, expected", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_exits_2_naming_the_key(tmp_path, name, text, expected):
    path = write(tmp_path, text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    for part in expected:
        assert part in result.output, f"{name}: {part!r} not in {result.output!r}"
    assert result.output.startswith("error: ")


def test_good_spec_validates_and_normalizes(tmp_path):
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    normalized = yaml.safe_load(result.output)
    assert normalized["ppo"]["total_steps"] == 20000
    assert normalized["env"]["frame_skip"] == 4  # default filled in
    assert JobSpec.model_validate(normalized) == load_spec(path)


def test_a_binary_file_is_refused_as_not_utf8_text(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: x\n\x9c\xff\x00")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "spec.yaml: not UTF-8 text (byte 8)" in result.output


def test_missing_file_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: no such file" in result.output


@pytest.mark.parametrize(
    "overrides, environ, expected",
    [
        ([], {"TRAIN_STEPS": "50000"}, {"ppo.total_steps": 50000}),
        (["ppo.total_steps=7"], {"TRAIN_STEPS": "50000"}, {"ppo.total_steps": 7}),  # CLI wins
        (
            [],
            {"TRAIN_ENVS": "auto", "TRAIN_BATCH_SIZE": "64"},
            {"env.num_envs": "auto", "ppo.batch_size": 64},
        ),
        (
            [],
            {
                "TRAIN_OUTPUT_DIR": "/tmp/out",
                "TRAIN_EPISODE_LENGTH": "1500",
                "TRAIN_UPDATE_EPOCHS": "8",
            },
            {"checkpoint.dir": "/tmp/out", "env.episode_length": 1500, "ppo.update_epochs": 8},
        ),
        ([], {"TRAIN_STEPS": ""}, {"ppo.total_steps": 20000}),  # empty Make variable: unset
        (
            ["game.reward.coin=2.5", "mlflow.tags.team=rl"],
            {},
            {"game.reward": {"coin": 2.5}, "mlflow.tags": {"team": "rl"}},
        ),
        (["env.actions=[noop, up, down]"], {}, {"env.actions": ["noop", "up", "down"]}),
    ],
)
def test_override_precedence(tmp_path, overrides, environ, expected):
    spec = load_spec(write(tmp_path, GOOD), overrides, environ)
    data = spec.model_dump(mode="json")
    for dotted, value in expected.items():
        node = data
        for part in dotted.split("."):
            node = node[part]
        assert node == value, dotted


@pytest.mark.parametrize(
    "overrides, environ, expected",
    [
        (
            ["ppo.totl_steps=3"],
            {},
            "--set ppo.totl_steps=3: unknown key 'ppo.totl_steps' (did you mean 'ppo.total_steps'?)",
        ),
        (["ppo.total_steps"], {}, "expected dotted.key=value"),
        (
            ["ppo.update_epochs=0"],
            {},
            "--set ppo.update_epochs=0: ppo.update_epochs: must be ≥ 1 (got 0)",
        ),
        (
            [],
            {"TRAIN_STEPS": "-5"},
            "environment TRAIN_STEPS=-5: ppo.total_steps: must be ≥ 1 (got -5)",
        ),
        ([], {"TRAIN_ENVS": "many"}, "environment TRAIN_ENVS=many: env.num_envs"),
    ],
)
def test_bad_override_names_its_source(tmp_path, overrides, environ, expected):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, GOOD), overrides, environ)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        # YAML's booleans: Pydantic's lax mode took `true` as 1 and `false` as 0.0 (found by probing)
        ("env.num_envs=true", "env.num_envs: must be a number, not true/false (got true)"),
        ("ppo.learning_rate=false", "ppo.learning_rate: must be a number, not true/false"),
        ("ppo.update_epochs=yes", "ppo.update_epochs: must be a number, not true/false"),
        ("sweep.num_envs=[1,true]", "sweep.num_envs: must be a number, not true/false"),
        ("game.reward={coin: true}", "game.reward: must be a number, not true/false"),
        # A value no branch of `int | 'auto'` takes: one line, not one per branch.
        ("env.num_envs=abc", "env.num_envs: must be an integer or 'auto' (got 'abc')"),
        ("env.envs_per_worker=1.5", "env.envs_per_worker: must be an integer or 'auto' (got 1.5)"),
    ],
)
def test_a_wrong_type_is_one_line_naming_what_the_key_takes(tmp_path, override, expected):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, GOOD), [override])
    message = str(info.value)
    assert message.startswith(f"--set {override}: ") and expected in message, message
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize(
    "written, steps", [("1e6", 1_000_000), ("2E4", 20_000), ("1.5e3", 1500), ("1e+06", 1_000_000)]
)
def test_exponent_numbers_are_numbers_as_in_yaml_1_2(tmp_path, written, steps):
    # PyYAML (YAML 1.1) read `1e6` as a string: "must be a valid integer (got '1e6')". Helm's
    # YAML and JSON read a number, and Go writes 1e+06 for a float it renders.
    text = GOOD.replace("total_steps: 20000", f"total_steps: {written}")
    assert f"total_steps: {written}" in text
    assert load_spec(write(tmp_path, text)).ppo.total_steps == steps
    spec = load_spec(
        write(tmp_path, GOOD), [f"ppo.total_steps={written}", "ppo.learning_rate=3e-4"]
    )
    assert (spec.ppo.total_steps, spec.ppo.learning_rate) == (steps, 3e-4)


def test_a_spec_read_from_standard_input_with_dash(tmp_path):
    text = GOOD.replace("total_steps: 20000", "total_steps: -5")
    result = CliRunner().invoke(main, ["validate", "-"], input=GOOD)
    assert result.exit_code == 0 and "total_steps: 20000" in result.output, result.output
    result = CliRunner().invoke(main, ["validate", "-"], input=text)
    assert result.exit_code == 2 and "error: <stdin>:8: ppo.total_steps: must be ≥ 1" in (
        result.output
    ), result.output


def test_booleans_still_fill_boolean_keys(tmp_path):
    spec = load_spec(write(tmp_path, GOOD), ["checkpoint.video=false", "ppo.norm_adv=false"])
    assert spec.checkpoint.video is False and spec.ppo.norm_adv is False


def test_every_seed_variable_maps_to_a_real_key():
    from trainer.spec.loading import _valid_paths

    assert set(ENV_OVERRIDES) == {
        "TRAIN_STEPS",
        "TRAIN_ENVS",
        "TRAIN_EPISODE_LENGTH",
        "TRAIN_UPDATE_EPOCHS",
        "TRAIN_BATCH_SIZE",
        "TRAIN_OUTPUT_DIR",
    }
    assert set(ENV_OVERRIDES.values()) <= set(_valid_paths())


def test_hashes_are_stable_and_scoped(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    more_steps = load_spec(write(tmp_path, GOOD), ["ppo.total_steps=99999"])
    other_lr = load_spec(write(tmp_path, GOOD), ["ppo.learning_rate=0.001"])
    assert spec_hash(spec) == spec_hash(load_spec(write(tmp_path, GOOD)))
    assert spec_hash(spec) != spec_hash(more_steps)
    assert training_hash(spec) == training_hash(more_steps)  # resume with a larger budget
    assert training_hash(spec) != training_hash(other_lr)


def test_with_num_envs_drops_sweep_and_revalidates(tmp_path):
    spec = load_spec(write(tmp_path, GOOD + "sweep: {num_envs: [1, 4]}\n"))
    point = spec.with_num_envs(4)
    assert point.env.num_envs == 4 and point.sweep.num_envs == []
    with pytest.raises(Exception, match="batch_size"):
        load_spec(
            write(tmp_path, GOOD.replace("batch_size: 128", "batch_size: 256"))
        ).with_num_envs(1)


def test_every_field_has_a_description():
    schema = JobSpec.model_json_schema()
    missing = []
    for model_name, model in schema["$defs"].items():
        for field, props in model.get("properties", {}).items():
            if not props.get("description"):
                missing.append(f"{model_name}.{field}")
    assert not missing


def test_schema_command_prints_json_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "JobSpec" and "ppo" in schema["properties"]


def test_real_process_exit_code_and_stderr(tmp_path):
    path = write(tmp_path, GOOD.replace("num_envs: 2", "num_envs: -3"))
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "env.num_envs" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(config):
    spec = load_spec(config, environ={})
    assert spec.name and spec.game.rom


def test_sweep_of_replicas_plans_the_pairs_whose_product_is_total_envs(tmp_path):
    """`num_envs: [2, 4, 8]`, `replicas: [1, 2, 4]`, `total_envs: 8` runs 1×8, 2×4 and 4×2;
    without total_envs every pair; each point a spec of its own, named `e<n>x<R>` (R > 1)."""
    from trainer import sweep as sweeps

    text = GOOD.replace("batch_size: 128", "batch_size: 64")
    spec = load_spec(
        write(tmp_path, text + "sweep: {num_envs: [2, 4, 8], replicas: [1, 2, 4], total_envs: 8}\n")
    )
    sweep, points = sweeps.plan(spec)
    assert [(p.replicas, p.num_envs) for p in points] == [(1, 8), (2, 4), (4, 2)]
    for point in points:
        assert point.spec.distributed.replicas == point.replicas
        assert point.spec.env.num_envs == point.num_envs
        assert point.spec.sweep.replicas == [] and point.spec.sweep.total_envs is None
        suffix = f"e{point.num_envs}" + (f"x{point.replicas}" if point.replicas > 1 else "")
        assert point.job_name.startswith(f"{spec.name}-{suffix}-")
        assert point.run_id.startswith(f"{spec.name}-{suffix}-r")
    assert len(sweeps.plan(spec.updated({"sweep.total_envs": None}))[1]) == 9
    # --envs / --replicas replace the lists; total_envs still filters, and names them when empty
    assert [(p.replicas, p.num_envs) for p in sweeps.plan(spec, [4], replicas_list=[2])[1]] == [
        (2, 4)
    ]
    with pytest.raises(SpecError, match=r"sweep.total_envs: .* \(with --envs and --replicas\)"):
        sweeps.plan(spec, [4], replicas_list=[1])
    with pytest.raises(SpecError, match="--replicas: counts must be distinct"):
        sweeps.plan(spec, replicas_list=[2, 2])
    # one replica keeps the names and the sweep id of a spec without the sweep dimension
    plain = load_spec(write(tmp_path, text + "sweep: {num_envs: [2, 4]}\n"))
    same = load_spec(write(tmp_path, text + "sweep: {num_envs: [2, 4], replicas: [1]}\n"))
    assert sweeps.plan(plain)[0] == sweeps.plan(same)[0]


def test_cli_replicas_option_renders_a_group_or_refuses_with_exit_2(tmp_path):
    path = write(tmp_path, GOOD.replace("batch_size: 128", "batch_size: 64"))
    result = CliRunner().invoke(main, ["render", str(path), "--replicas", "2", "-n", "ns"])
    assert result.exit_code == 0, result.output
    assert "kind: Service" in result.output and "completionMode: Indexed" in result.output
    for bad, message in [("0", "integer ≥ 1"), ("2,x", "comma-separated"), ("3", "multiple of")]:
        result = CliRunner().invoke(main, ["render", str(path), "--replicas", bad, "-n", "ns"])
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output


def test_tracking_uri_schemes_are_mlflows_own_registry():
    """The spec checks schemes without importing MLflow: the list must stay MLflow's."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from trainer.spec.tracking_uri import BUILTIN_SCHEMES

    assert set(_tracking_store_registry._registry) - {""} == BUILTIN_SCHEMES


@pytest.mark.parametrize(
    "uri",
    [
        "http://mlflow:5000",
        "HTTPS://mlflow.example.com",
        "file:///var/lib/mlruns",
        "/var/lib/mlruns",
        "mlruns",
        "sqlite:///mlflow.db",
        "postgresql+psycopg2://db:5432/mlflow",
        "databricks",
        "databricks://profile",
    ],
)
def test_tracking_uris_mlflow_opens_are_accepted(uri):
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    _tracking_store_registry.get_store_builder(uri)  # MLflow opens it …
    assert JobSpec.model_validate({"name": "t", "mlflow": {"tracking_uri": uri}})  # … the spec too


@pytest.mark.parametrize("uri", ["ftp://host/mlruns", "s3://bucket/mlruns", "redis+x://h"])
def test_tracking_uris_mlflow_cannot_open_are_refused_everywhere(tmp_path, uri):
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    with pytest.raises(Exception, match="unsupported URI"):
        _tracking_store_registry.get_store_builder(uri)
    scheme = uri.split(":")[0].split("+")[0]
    spec = str(ROOT / "configs" / "quickstart.yaml")
    result = CliRunner().invoke(main, ["validate", spec, "--set", f"mlflow.tracking_uri={uri}"])
    assert result.exit_code == 2
    assert f"mlflow.tracking_uri: MLflow has no tracking store for the scheme '{scheme}:'" in (
        result.output
    )
    for command in (["compare", "some-sweep"], ["play", "some-run-id"]):
        result = CliRunner().invoke(main, [*command, "--tracking-uri", uri])
        assert result.exit_code == 2 and "Invalid value for '--tracking-uri'" in result.output
        result = CliRunner(env={"MLFLOW_TRACKING_URI": uri}).invoke(main, command)
        assert result.exit_code == 2 and "no tracking store" in result.output


@pytest.mark.parametrize(
    "uri, path",
    [
        ("sqlite:///mlflow.db", "mlflow.db"),
        ("sqlite:////var/lib/mlflow.db?timeout=20", "/var/lib/mlflow.db"),
        ("file:///var/lib/my%20runs", "/var/lib/my runs"),
        ("mlruns", "mlruns"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("http://mlflow:5000", None),
        ("postgresql://db/mlflow", None),
    ],
)
def test_local_store_path_is_the_file_or_folder_mlflow_would_create(uri, path):
    from trainer.spec.tracking_uri import local_store_path

    assert local_store_path(uri) == (None if path is None else Path(path))


@pytest.mark.parametrize("uri", ["sqlite:///gone.db", "gone-runs", "file://{tmp}/gone", None])
def test_commands_that_only_read_runs_refuse_a_store_that_does_not_exist(
    tmp_path, monkeypatch, uri
):
    """compare and play on a mistyped store (or none where they run): exit 2 naming it, and
    no empty store left behind (MLflow would create one and then find nothing in it)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"MLFLOW_TRACKING_URI": None})
    option = [] if uri is None else ["--tracking-uri", uri.format(tmp=tmp_path)]
    for command in (["compare", "some-sweep"], ["play", "0123456789abcdef0123456789abcdef"]):
        result = runner.invoke(main, [*command, *option])
        assert result.exit_code == 2, result.output
        assert "no MLflow tracking store at " in result.output, result.output
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override, expected",
    [
        ("game.ram.rewards[0].scale=3", lambda s: s.game.ram.rewards[0].scale == 3.0),
        ("game.ram.start.until[2].value=5", lambda s: s.game.ram.start.until[2].value == 5),
        (
            'game.ram.rewards[1]={name: k2, address: "0xC00D", kind: increase}',
            lambda s: s.game.ram.rewards[1].name == "k2",
        ),
    ],
)
def test_set_reaches_list_items_as_helm_does(override, expected):
    assert expected(load_spec(ROOT / "configs" / "dungeon-ram.yaml", [override]))


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "game.ram.rewards[0].address=0x10000",
            "--set game.ram.rewards[0].address=0x10000: game.ram.rewards.0.address: must be a "
            "RAM address",
        ),
        ("game.ram.rewards[9].scale=3", "game.ram.rewards holds 6 item(s), no [9]; set the whole"),
        ("game.ram.rewards[0].nope=1", "unknown key 'game.ram.rewards[0].nope'"),
        ("env[0].x=1", "env is not a list"),
        ("game.ram.rewards[x].scale=1", "malformed key 'game.ram.rewards[x].scale'"),
    ],
)
def test_set_refuses_list_items_that_are_not_there(override, message):
    with pytest.raises(SpecError) as info:
        load_spec(ROOT / "configs" / "dungeon-ram.yaml", [override])
    assert message in str(info.value)
