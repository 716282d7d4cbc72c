"""A ROM and save state on this machine, shipped to the pod (`trainer.kube.game`): rendered as
ConfigMaps with binaryData, mounted, the pod's spec rewritten; too big or missing files refused
before anything is sent. The pod that plays a shipped ROM is tests/test_pod.py's."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_launcher import FakeCluster, launch

from trainer.cli import main
from trainer.kube import game
from trainer.kube import manifests as kube
from trainer.spec import SpecError, run_id, validate_spec
from trainer.spec.kube_rules import GAME_DIR
from trainer.spec.rom_header import header_checksum

ROOT = Path(__file__).resolve().parents[1]


def rom_bytes(pattern: bytes, size: int = 0x8000) -> bytes:
    """`size` bytes of `pattern` with a valid cartridge header (ROM only, no RAM): what render
    accepts as a ROM to ship (a file that is no ROM is refused before anything is sent)."""
    rom = bytearray((pattern * (size // len(pattern) + 1))[:size])
    rom[0x147] = rom[0x149] = 0
    rom[0x14D] = header_checksum(bytes(rom))
    return bytes(rom)


def zelda(tmp_path: Path, rom: bytes | None = None, state: bytes = b"state") -> dict:
    """configs/zelda.yaml with its ROM and save state given as files here."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "zelda.gb").write_bytes(rom_bytes(b"\x00") if rom is None else rom)
    (tmp_path / "zelda.gb.state").write_bytes(state)
    data = yaml.safe_load((ROOT / "configs/zelda.yaml").read_text())
    data["game"].update(rom=str(tmp_path / "zelda.gb"), state=str(tmp_path / "zelda.gb.state"))
    return data


def configmaps(manifests: list[dict]) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}


def test_rom_and_state_are_shipped_as_configmaps_and_mounted(tmp_path: Path) -> None:
    rom = rom_bytes(b"ROM")
    data = zelda(tmp_path, rom=rom, state=b"STATE")
    manifests = kube.render(validate_spec(data), [2])
    assert [m["kind"] for m in manifests] == ["ConfigMap"] * 3 + ["Job"]
    job = manifests[-1]
    name = job["metadata"]["name"]
    objects = configmaps(manifests)
    ((rom_key, rom_b64),) = objects[f"{name}-rom"]["binaryData"].items()
    ((state_key, state_b64),) = objects[f"{name}-state"]["binaryData"].items()
    assert base64.b64decode(rom_b64) == rom and base64.b64decode(state_b64) == b"STATE"
    assert rom_key.endswith("-zelda.gb") and state_key.endswith("-zelda.gb.state")
    assert objects[f"{name}-rom"]["metadata"]["labels"] == objects[name]["metadata"]["labels"]
    # The pod's spec points at the mounted copies; the pod mounts both there, read-only.
    point = validate_spec(yaml.safe_load(objects[name]["data"]["spec.yaml"]))
    assert (
        point.game.rom == f"{GAME_DIR}/{rom_key}" and point.game.state == f"{GAME_DIR}/{state_key}"
    )
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["game"] == {
        "name": "game",
        "projected": {
            "sources": [
                {"configMap": {"name": f"{name}-rom"}},
                {"configMap": {"name": f"{name}-state"}},
            ]
        },
    }
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["game"] == {"name": "game", "mountPath": GAME_DIR, "readOnly": True}


def test_another_rom_is_another_job_and_another_run(tmp_path: Path) -> None:
    first = kube.plan_pods(validate_spec(zelda(tmp_path / "a", rom=rom_bytes(b"one"))), [2])[1][0]
    second = kube.plan_pods(validate_spec(zelda(tmp_path / "b", rom=rom_bytes(b"two"))), [2])[1][0]
    same = kube.plan_pods(validate_spec(zelda(tmp_path / "c", rom=rom_bytes(b"one"))), [2])[1][0]
    assert first.job_name != second.job_name and run_id(first.spec) != run_id(second.spec)
    # The content, not where it was read, decides: the same ROM elsewhere is the same Job.
    assert first.job_name == same.job_name


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    for sub in ("a", "b", "c"):
        (tmp_path / sub).mkdir()


def test_a_rom_of_exactly_1_mib_fits_one_byte_more_is_refused(tmp_path: Path) -> None:
    kube.render(validate_spec(zelda(tmp_path, rom=rom_bytes(b"\x01", game.MAX_BYTES))), [2])
    data = zelda(tmp_path, rom=rom_bytes(b"\x01", game.MAX_BYTES + 1))
    with pytest.raises(SpecError, match=r"game\.rom: .*zelda\.gb is 1,048,577 bytes.*volume"):
        kube.render(validate_spec(data), [2])
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["render", str(path)])
    assert result.exit_code == 2 and "game.rom:" in result.output and result.stdout == ""


def _huc1() -> bytes:
    rom = bytearray(rom_bytes(b"\x00"))
    rom[0x147] = 0xFF  # HuC1: a valid header, a cartridge PyBoy does not emulate
    rom[0x14D] = header_checksum(bytes(rom))
    return bytes(rom)


@pytest.mark.parametrize(
    ("rom", "says"),
    [(b"\x00" * 4096, "is not a Game Boy ROM"), (_huc1(), "needs a cartridge PyBoy")],
    ids=["not-a-rom", "huc1"],
)
def test_a_rom_pyboy_cannot_run_is_refused_before_anything_is_sent(
    tmp_path: Path, rom: bytes, says: str
) -> None:
    """Found by probing: render shipped any file as the ROM, and each pod then failed at start."""
    assert_refused_before_sending(
        tmp_path, zelda(tmp_path, rom=rom), f"game.rom: {tmp_path / 'zelda.gb'} {says}"
    )


def assert_refused_before_sending(tmp_path: Path, data: dict, says: str) -> None:
    """`launch` raises SpecError saying `says` before any call to the cluster, and `render`
    exits 2 saying it, with nothing on stdout."""
    cluster = FakeCluster()
    with pytest.raises(SpecError, match=re.escape(says)):
        launch(cluster, data, [2])
    assert cluster.calls == []
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["render", str(path)])
    assert result.exit_code == 2 and says in result.output and result.stdout == ""


@pytest.mark.parametrize(
    ("game_values", "field"),
    [({"rom": "roms/nosuch.gb"}, "game.rom"), ({"state": "nosuch.state"}, "game.state")],
)
def test_a_relative_path_that_is_no_file_here_is_refused(game_values: dict, field: str) -> None:
    data = {"name": "x", "game": {"adapter": "generic", "rom": "builtin:dungeon", **game_values}}
    with pytest.raises(SpecError, match=rf"{field}: .* is not a file here"):
        kube.render(validate_spec(data))


@pytest.mark.parametrize(
    ("game_values", "says"),
    [
        ({"rom": "/proc/self/mem"}, "game.rom: cannot read /proc/self/mem (Input/output error)"),
        ({"state": "/proc/self/mem"}, "game.state: cannot read /proc/self/mem (Input/output"),
        ({"rom": "/" + "r" * 300 + ".gb"}, "game.rom: cannot look at /rrr"),
        ({"state": "/tmp"}, "game.state: /tmp is a directory; give the save state file's path"),
    ],
)
def test_a_file_that_cannot_be_read_here_is_refused_before_anything_is_sent(
    tmp_path: Path, game_values: dict, says: str
) -> None:
    """Found by probing: render and launch printed OSError's traceback (exit 1) for a ROM or
    state whose name stat() refuses or whose read() fails."""
    data = zelda(tmp_path)
    data["game"].update(game_values)
    assert_refused_before_sending(tmp_path, data, says)


def test_an_absolute_path_not_here_is_left_for_a_volume_or_image() -> None:
    """configs/zelda.yaml as it is: the ROM is expected at /roms in the pod (a volume)."""
    data = yaml.safe_load((ROOT / "configs/zelda.yaml").read_text())
    manifests = kube.render(validate_spec(data), [2])
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Job"]
    point = yaml.safe_load(manifests[0]["data"]["spec.yaml"])
    assert point["game"]["rom"] == "/roms/zelda.gb"


def test_a_path_in_the_game_folder_is_refused() -> None:
    data = {"name": "x", "game": {"rom": f"{GAME_DIR}/abc-zelda.gb", "adapter": "generic"}}
    with pytest.raises(SpecError, match="game.rom: .*give the path of your file"):
        kube.render(validate_spec(data))


def test_launch_sends_the_rom_before_its_job_and_cancel_by_spec_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = FakeCluster()
    data = zelda(tmp_path)
    data["sweep"] = {"num_envs": [1, 2]}
    code, lines = launch(cluster, data)
    assert code == 0, lines
    created = cluster.created()
    jobs = [n for k, n in created if k == "Job"]
    for job in jobs:  # a Job's ConfigMaps come before it
        before = {n for k, n in created[: created.index(("Job", job))] if k == "ConfigMap"}
        assert {job, f"{job}-rom", f"{job}-state"} <= before
    assert "Jobs: 2 created" in lines[-3]
    for job in jobs:  # the shipped game is the Job's dependent, like its spec
        owner = cluster.objects["ConfigMap", "pyboy-trainer", f"{job}-rom"]["metadata"]
        assert owner["ownerReferences"][0]["name"] == job

    from trainer import launcher
    from trainer.kube.client import KubeClient

    monkeypatch.setattr(launcher, "make_client", lambda context=None: KubeClient(cluster, cluster))
    path = tmp_path / "zelda.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["cancel", str(path)])
    assert result.exit_code == 0, result.output
    assert not [k for k in cluster.objects if k[0] in ("Job", "ConfigMap")]


def test_a_failed_rom_configmap_skips_its_job(tmp_path: Path) -> None:
    from test_launcher import FakeApiException

    cluster = FakeCluster()
    data = zelda(tmp_path)
    name = kube.plan_pods(validate_spec(copy.deepcopy(data)))[1][0].job_name
    real = cluster.create_namespaced_config_map

    def refuse_rom(namespace: str, body: dict, dry_run: str | None = None, **kwargs):
        if body["metadata"]["name"] == f"{name}-rom" and dry_run is None:
            cluster.calls.append(("create", "ConfigMap", body))
            raise FakeApiException(403, "Forbidden", "exceeded quota: configmaps")
        return real(namespace, body, dry_run, **kwargs)

    cluster.create_namespaced_config_map = refuse_rom  # type: ignore[method-assign]
    code, lines = launch(cluster, data)
    assert code == 1
    assert ("Job", "pyboy-trainer", name) not in cluster.objects
    assert any("skipped" in line and name in line for line in lines), lines
