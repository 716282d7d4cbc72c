"""builtin:cavern, the ROM itself: reproducible build, valid header, and the game under PyBoy.

cavern has no Python adapter (it is read through the declarative `ram` adapter), so this file
reads the RAM contract straight from the addresses declared in ram.h, and checks it against a
frame-by-frame reference model in Python (rules as in cavern.c, constants parsed from its
#defines, the world parsed from world.h): after every frame of every scripted run, the whole
contract (bats and RNG included), the shadow OAM and OAM, the palette, the HUD on the window map
and the visible background (the scrolled BG map) must agree with the model. Inputs use the env's
timing: button held 2 frames, released 2 (frame_skip 4).
"""

from __future__ import annotations

import io
import random
import re
from collections import deque
from dataclasses import dataclass

import numpy as np
import pytest
from rom_checks import assert_rebuilds_identically, assert_valid_header

from trainer.envs.env import import_pyboy
from trainer.games import BUILTIN_ROMS
from trainer.games.screen import background_tiles, screen_tiles

ROM = BUILTIN_ROMS["cavern"]
SRC = ROM.parent
SIGNATURE = b"builtin:cavern ram v1"
BOOT_FRAME_LIMIT = 150
BUTTON = {"U": "up", "D": "down", "L": "left", "R": "right", "A": "a", "B": "b"}
PAD_BIT = {"R": 0x01, "L": 0x02, "U": 0x04, "D": 0x08, "A": 0x10, "B": 0x20}
UP, DOWN, LEFT, RIGHT = range(4)
DX, DY = (0, 0, -1, 1), (-1, 1, 0, 0)
KEY_OF_DIR = "UDLR"


# ---- constants and layout, parsed from the sources ---------------------------------------------
def _defines(*names: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in names:
        for key, value in re.findall(
            r"^#define (\w+) (0x[0-9A-Fa-f]+|\d+)\b", (SRC / name).read_text(), re.M
        ):
            out[key] = int(value, 0)
    return out


C = _defines("cavern.c", "ram.h", "world.h", "tiles.h")
TILE = {k: int(v) for k, v in re.findall(r"\bT_(\w+) = (\d+),", (SRC / "cavern.c").read_text())}
RAM_H = (SRC / "ram.h").read_text()
#: ram_<name> -> (address, C type) for every `__at(...)` declaration
DECLS = {
    name: (int(addr, 16), ctype)
    for addr, ctype, name in re.findall(r"__at\((0x[0-9A-F]+)\) (?:volatile )?(\w+) (\w+)", RAM_H)
}
ADDR = {name.removeprefix("ram_"): addr for name, (addr, _) in DECLS.items()}
WIDE = {name.removeprefix("ram_") for name, (_, ctype) in DECLS.items() if ctype == "uint16_t"}
CONTRACT_END = ADDR["bats"] + 8 * C["NUM_BATS"]
#: fields compared with the model; the timing maxima (vblank_lines, logic_*) are checked apart
FIELDS = [
    n
    for n in ADDR
    if ADDR["mode"] <= ADDR[n] < ADDR["bats"]
    and n not in {"vblank_lines", "logic_ly", "logic_time"}
]
W, H = C["WORLD_W"], C["WORLD_H"]
ROWS = C["VIEW_ROWS"]
CAM_MAX_X, CAM_MAX_Y = W * 8 - 160, H * 8 - 144
WORLD_MAP = "".join(
    re.findall(r'"([^"]*)"', (SRC / "world.h").read_text().split("world_map[] =")[-1])
)
PLAYING, GAME_OVER = C["MODE_PLAYING"], C["MODE_GAME_OVER"]
GAME_OVER_TEXT = [TILE[k] for k in ("LETTER_G", "LETTER_A", "LETTER_M", "LETTER_E", "BLANK")] + [
    TILE[k] for k in ("LETTER_O", "LETTER_V", "LETTER_E", "LETTER_R")
]


# ---- reference model ----------------------------------------------------------------------------
def cam_for(p: int, offset: int, most: int) -> int:
    return 0 if p <= offset else min(p - offset, most)


@dataclass
class Bat:
    x: int
    y: int
    dir: int = UP
    steps: int = 0
    delay: int = 0


class Model:
    """One frame of cavern.c's logic per `run_frame(pad)`, on the same integers; attributes are
    named after the RAM fields (ram_<name> in ram.h)."""

    def __init__(self) -> None:
        kinds = {"#": "WALL", "*": "GEM", ",": "CAMP", "@": "CAMP"}
        self.world = [TILE[kinds.get(ch, "FLOOR")] for ch in WORLD_MAP]
        self.gem_cells = [i for i, ch in enumerate(WORLD_MAP) if ch == "*"]
        start = WORLD_MAP.index("@")
        self.start = (start % W, start // W)
        bat_cells = [i for i, ch in enumerate(WORLD_MAP) if ch == "B"]
        self.bats = [Bat(8 * (i % W), 8 * (i // W), delay=n) for n, i in enumerate(bat_cells)]
        self.mode, self.frame = PLAYING, 0
        self.score_lo = self.score_hi = 0
        self.lives, self.deaths, self.round, self.invuln = C["START_LIVES"], 0, 0, 0
        self.gems_left = len(self.gem_cells)
        self.player_x, self.player_y = self.start
        self.player_px, self.player_py = 8 * self.player_x, 8 * self.player_y
        self.player_dir, self.player_move, self.player_chain = DOWN, 0, 0
        self.pad = self.pad_prev = 0
        self.redraw = ROWS
        self.camera_x = cam_for(self.player_px, C["PLAYER_SCREEN_X"], CAM_MAX_X)
        self.camera_y = cam_for(self.player_py, C["PLAYER_SCREEN_Y"], CAM_MAX_Y)
        self.rng = C["RNG_SEED"]
        self.restore = False
        self.respawned = False

    # -- rules
    def rand8(self) -> int:
        x = self.rng
        x ^= (x << 7) & 0xFFFF
        x ^= x >> 9
        x ^= (x << 8) & 0xFFFF
        self.rng = x
        return x & 0xFF

    def run_frame(self, pad: int) -> None:
        self.respawned = False
        self.frame = (self.frame + 1) & 0xFFFF
        edge = pad & ~self.pad_prev & 0x0F
        self.pad = self.pad_prev = pad
        if self.mode != PLAYING:
            return
        if self.redraw < ROWS:
            self.player_chain = 0
            if self.restore:
                for i in self.gem_cells:
                    self.world[i] = TILE["GEM"]
                self.restore = False
            self.redraw = min(ROWS, self.redraw + C["REDRAW_ROWS_PER_FRAME"])
            return
        self.update_player(pad, edge)
        self.update_bats()
        if self.invuln:
            self.invuln -= 1
        else:
            self.check_hits()
        if not self.respawned:
            self.camera_x = cam_for(self.player_px, C["PLAYER_SCREEN_X"], CAM_MAX_X)
            self.camera_y = cam_for(self.player_py, C["PLAYER_SCREEN_Y"], CAM_MAX_Y)

    def update_player(self, pad: int, edge: int) -> None:
        chain, self.player_chain = self.player_chain, 0
        if self.player_move == 0:
            pressed = [d for d, bit in enumerate((0x04, 0x08, 0x02, 0x01)) if pad & bit]
            if not pressed or not (edge or chain):
                return
            d = self.player_dir = pressed[0]
            x, y = self.player_x + DX[d], self.player_y + DY[d]
            if self.world[y * W + x] == TILE["WALL"]:
                return
            self.player_x, self.player_y, self.player_move = x, y, C["STEP_FRAMES"]
        self.player_px += C["PLAYER_SPEED"] * DX[self.player_dir]
        self.player_py += C["PLAYER_SPEED"] * DY[self.player_dir]
        self.player_move -= 1
        if self.player_move == 0:
            self.player_chain = 1
            self.arrive()

    def arrive(self) -> None:
        i = self.player_y * W + self.player_x
        if self.world[i] != TILE["GEM"]:
            return
        self.world[i] = TILE["FLOOR"]
        lo, hi = self.score_lo, self.score_hi
        if hi == 0x99 and lo >= 0x90:
            lo = 0x99
        else:
            lo += 0x10
            if lo & 0xF0 == 0xA0:
                lo &= 0x0F
                hi += 1
                if hi & 0x0F == 0x0A:
                    hi += 6
        self.score_lo, self.score_hi = lo, hi
        self.gems_left -= 1
        if self.gems_left == 0:
            self.gems_left = len(self.gem_cells)
            self.round += 1
            self.redraw = 0
            self.restore = True

    def update_bats(self) -> None:
        for b in self.bats:
            if b.delay:
                b.delay -= 1
                continue
            if b.steps == 0:
                self.bat_decide(b)
                if b.steps == 0:
                    continue
            b.steps -= 1
            step = 1 if b.dir & 1 else -1
            if b.dir & 2:
                b.x += step
            else:
                b.y += step

    def bat_decide(self, b: Bat) -> None:
        bx, by = b.x >> 3, b.y >> 3
        px, py = self.player_x, self.player_y
        enter = (TILE["FLOOR"], TILE["GEM"])
        opened = [d for d in range(4) if self.world[(by + DY[d]) * W + bx + DX[d]] in enter]
        if not opened:
            return
        if len(opened) > 1:
            opened = [d for d in opened if d != b.dir ^ 1]
        r = self.rand8()
        d = opened[(r >> 2) % len(opened)]
        adx, ady = abs(px - bx), abs(py - by)
        chase = r & 3 and 0 < adx + ady <= C["BAT_CHASE_RANGE"]
        if chase and self.world[py * W + px] != TILE["CAMP"]:
            horizontal = RIGHT if px > bx else LEFT
            vertical = DOWN if py > by else UP
            if adx >= ady:
                want, alt = horizontal, vertical if ady else None
            else:
                want, alt = vertical, horizontal if adx else None
            if want in opened:
                d = want
            elif alt in opened:
                d = alt
        b.dir, b.steps = d, 8

    def check_hits(self) -> None:
        for b in self.bats:
            if (
                abs(b.x - self.player_px) < C["HIT_DIST"]
                and abs(b.y - self.player_py) < C["HIT_DIST"]
            ):
                self.lose_life()
                return

    def lose_life(self) -> None:
        self.lives -= 1
        self.deaths += 1
        if self.lives == 0:
            self.mode = GAME_OVER
            return
        self.player_x, self.player_y = self.start
        self.player_px, self.player_py = 8 * self.start[0], 8 * self.start[1]
        self.player_move = self.player_chain = 0
        self.invuln = C["INVULN_FRAMES"]
        self.camera_x = cam_for(self.player_px, C["PLAYER_SCREEN_X"], CAM_MAX_X)
        self.camera_y = cam_for(self.player_py, C["PLAYER_SCREEN_Y"], CAM_MAX_Y)
        self.redraw = 0
        self.respawned = True

    # -- what the emulator should show
    def ram(self) -> dict[str, object]:
        out: dict[str, object] = {n: getattr(self, n) for n in FIELDS}
        out["bats"] = [(b.x, b.y, b.dir, b.steps, b.delay) for b in self.bats]
        return out

    def score(self) -> int:
        return int(f"{self.score_hi:02X}{self.score_lo:02X}")

    def oam(self) -> list[int]:
        def sprite(wx: int, wy: int, tile: int, attr: int) -> list[int]:
            sx, sy = (wx - self.camera_x + 8) & 0xFFFF, (wy - self.camera_y + 16) & 0xFFFF
            hidden = sx == 0 or sx >= 168 or sy == 0 or sy >= 160
            return [0, 0, tile, attr] if hidden else [sy, sx, tile, attr]

        attr = 0x20 if self.player_dir == LEFT else 0
        if self.invuln and self.frame & 4:
            attr |= 0x10
        out = sprite(self.player_px, self.player_py, TILE["PLAYER"], attr)
        for b in self.bats:
            out += sprite(b.x, b.y, TILE["BAT"], 0x20 if self.frame & 8 else 0)
        return out + [0] * (160 - len(out))

    def view(self) -> np.ndarray:
        """The 18x20 background tiles on screen: the world under the camera."""
        tx, ty = self.camera_x >> 3, self.camera_y >> 3
        out = np.full((18, 20), TILE["VOID"], dtype=np.uint16)
        for r in range(18):
            for c in range(20):
                if ty + r < H and tx + c < W:
                    out[r, c] = self.world[(ty + r) * W + tx + c]
        return out

    def hud(self) -> list[int]:
        digit = TILE["DIGIT0"]
        hi, lo = self.score_hi, self.score_lo
        row = [TILE["HEART"], digit + self.lives, TILE["BLANK"], TILE["GEM"]]
        row += [digit + (hi >> 4), digit + (hi & 15), digit + (lo >> 4), digit + (lo & 15)]
        row += [TILE["BLANK"]] * (C["HUD_GAME_OVER_X"] - C["HUD_LEN"])
        return row + (GAME_OVER_TEXT if self.mode == GAME_OVER else [TILE["BLANK"]] * 9)


# ---- emulator helpers ---------------------------------------------------------------------------
def read_ram(pyboy) -> dict[str, object]:
    mem = bytes(pyboy.memory[0xD000:CONTRACT_END])

    def at(name: str) -> int:
        i = ADDR[name] - 0xD000
        return mem[i] | mem[i + 1] << 8 if name in WIDE else mem[i]

    out: dict[str, object] = {n: at(n) for n in FIELDS}
    base = ADDR["bats"] - 0xD000
    bats = [mem[base + 8 * i : base + 8 * i + 8] for i in range(C["NUM_BATS"])]
    out["bats"] = [(b[0] | b[1] << 8, b[2] | b[3] << 8, b[4], b[5], b[6]) for b in bats]
    return out


def ready(pyboy) -> bool:
    head = pyboy.memory[ADDR["magic"] : ADDR["mode"] + 1]
    return bytes(head[:4]) == b"CAVE" and head[ADDR["mode"] - ADDR["magic"]] == PLAYING


def boot():
    """Power on and tick until the game says it is ready; returns (pyboy, frames it took)."""
    pyboy = import_pyboy()(str(ROM), window="null", sound_emulated=False)
    for frames in range(1, BOOT_FRAME_LIMIT + 1):
        pyboy.tick(1, False)
        if ready(pyboy):
            return pyboy, frames
    pyboy.stop(save=False)
    pytest.fail(f"cavern not ready (magic CAVE, mode {PLAYING}) within {BOOT_FRAME_LIMIT} frames")


def check(pyboy, model: Model, where: str, hud: bool = True) -> None:
    """Everything the emulator shows after a frame against the model."""
    got, want = read_ram(pyboy), model.ram()
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not diff, f"{where}: RAM differs (emulator, model): {diff}"
    mem = pyboy.memory
    oam = model.oam()
    assert mem[0xC000:0xC0A0] == oam, f"{where}: shadow OAM"
    assert mem[0xFE00:0xFEA0] == oam, f"{where}: OAM (DMA)"
    scroll = (model.camera_x & 0xFF, model.camera_y & 0xFF)
    assert (mem[0xFF43], mem[0xFF42]) == scroll, f"{where}: SCX, SCY"
    bgp = C["BGP_NORMAL"] if model.redraw >= ROWS else C["BGP_BLANK"]
    assert mem[0xFF47] == bgp, f"{where}: BGP"
    if hud:
        assert mem[0x9C00:0x9C14] == model.hud(), f"{where}: HUD"
    if model.redraw >= ROWS:  # the streamed BG map holds the world under the camera
        view = background_tiles(pyboy)
        assert np.array_equal(view, model.view()), f"{where}: background\n{view}"


def step(pyboy, model: Model, key: str | None, where: str = "", hud: bool = True) -> None:
    """One env step (frame_skip 4): `key` held 2 frames, released 2; checked after every frame."""
    if key:
        pyboy.button_press(BUTTON[key])
    for f in range(4):
        if f == 2 and key:
            pyboy.button_release(BUTTON[key])
        pyboy.tick(1, False)
        model.run_frame(PAD_BIT[key] if key and f < 2 else 0)
        check(pyboy, model, f"{where} frame {f + 1}", hud)


def check_timing(pyboy) -> None:
    """The VRAM work stayed inside VBlank and every frame's logic finished before it."""
    mem = pyboy.memory
    assert mem[ADDR["vblank_lines"]] <= 9, (
        f"VBlank work ran past LY 153 ({mem[ADDR['vblank_lines']]})"
    )
    assert mem[ADDR["logic_ly"]] < 144, f"logic ran into VBlank (LY {mem[ADDR['logic_ly']]})"
    assert mem[ADDR["logic_time"]] < 64, f"logic took {mem[ADDR['logic_time']]} x 256 cycles"


def toward(model: Model, goals: set[tuple[int, int]]) -> str | None:
    """First key of a shortest walk (walls only) from the player to one of `goals`."""
    start = (model.player_x, model.player_y)
    first: dict[tuple[int, int], str | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell in goals and cell != start:
            return first[cell]
        for d in range(4):
            nxt = (cell[0] + DX[d], cell[1] + DY[d])
            if nxt not in first and model.world[nxt[1] * W + nxt[0]] != TILE["WALL"]:
                first[nxt] = first[cell] or KEY_OF_DIR[d]
                queue.append(nxt)
    return None


def gems(model: Model) -> set[tuple[int, int]]:
    return {(i % W, i // W) for i, t in enumerate(model.world) if t == TILE["GEM"]}


def bats(model: Model) -> set[tuple[int, int]]:
    return {(b.x >> 3, b.y >> 3) for b in model.bats}


@pytest.fixture(scope="module")
def emulator():
    pyboy, _ = boot()
    state = io.BytesIO()
    pyboy.save_state(state)
    yield pyboy, state
    pyboy.stop(save=False)


@pytest.fixture
def game(emulator):
    """The module's PyBoy back at the first playable frame, and a fresh model."""
    pyboy, state = emulator
    state.seek(0)
    pyboy.load_state(state)
    return pyboy, Model()


# ---- build, header, sources ---------------------------------------------------------------------
def test_build_is_reproducible(tmp_path):
    assert_rebuilds_identically(ROM, tmp_path)


def test_header_is_valid():
    rom = ROM.read_bytes()
    assert_valid_header(rom, b"CAVERN")
    assert rom[0x68 : 0x68 + len(SIGNATURE)] == SIGNATURE


def test_ram_table_matches_declarations():
    """Every row of ram.h's header table is declared at its address, and every declaration of
    the contract page is in the table."""
    table = dict(re.findall(r"^ \*   (0x[0-9A-F]{4})\s+[\dx ]+\s+.+?\s(RAM_\w+)\s", RAM_H, re.M))
    table = {int(addr, 16): name for addr, name in table.items()}
    declared = {addr: name for name, (addr, _) in DECLS.items()}
    for addr, name in table.items():
        assert declared.get(addr, "").startswith(name.lower()), f"{name} at {addr:#06x}"
    for addr, name in declared.items():
        if addr >= 0xD000:
            assert any(name.startswith(n.lower()) for n in table.values()), name
            assert addr in table or name == "ram_score_hi", (
                f"{name} at {addr:#06x} not in the table"
            )


def test_world_is_consistent():
    assert len(WORLD_MAP) == W * H
    rows = [WORLD_MAP[y * W : (y + 1) * W] for y in range(H)]
    assert set(rows[0] + rows[-1] + rows[-2]) == {"#"}  # bottom row hides under the HUD
    assert all(row[0] == row[-1] == "#" for row in rows)
    assert WORLD_MAP.count("@") == 1 and WORLD_MAP.count("B") == C["NUM_BATS"]
    assert 0 < WORLD_MAP.count("*") <= C["MAX_GEMS"]
    model = Model()
    reached, queue = {model.start}, deque([model.start])
    while queue:
        x, y = queue.popleft()
        for d in range(4):
            nxt = (x + DX[d], y + DY[d])
            if nxt not in reached and WORLD_MAP[nxt[1] * W + nxt[0]] != "#":
                reached.add(nxt)
                queue.append(nxt)
    open_cells = {(i % W, i // W) for i, ch in enumerate(WORLD_MAP) if ch != "#"}
    assert reached == open_cells, "every floor, gem and camp cell is reachable from the start"
    assert set(TILE.values()) == set(range(C["NUM_TILES"])) - {
        TILE["DIGIT0"] + n for n in range(1, 10)
    }


# ---- the game -----------------------------------------------------------------------------------
def test_boots_to_playing_with_the_contract_at_rest():
    pyboy, frames = boot()
    try:
        assert frames <= BOOT_FRAME_LIMIT
        mem = pyboy.memory
        assert bytes(mem[0xD000:0xD004]) == b"CAVE"
        assert mem[ADDR["version"]] == C["RAM_CONTRACT_VERSION"]
        model = Model()
        check(pyboy, model, "boot")
        got = read_ram(pyboy)
        assert (got["lives"], got["score_lo"], got["score_hi"], got["mode"]) == (3, 0, 0, PLAYING)
        assert got["gems_left"] == WORLD_MAP.count("*")
        # The player is sprite 0, on screen at (72, 64): tile row 8, column 9, aligned with the
        # background (the camera is a multiple of 8 at rest).
        assert mem[0xFE00:0xFE03] == [64 + 16, 72 + 8, TILE["PLAYER"]]
        assert screen_tiles(pyboy)[8, 9] == TILE["PLAYER"]
        assert got["camera_x"] % 8 == got["camera_y"] % 8 == 0
    finally:
        pyboy.stop(save=False)


def test_dpad_moves_one_tile_per_step_and_scrolls(game):
    pyboy, model = game
    start = Model()
    for n, key in enumerate("LLL", start=1):
        step(pyboy, model, key, f"L{n}")
        ram = read_ram(pyboy)
        assert (ram["player_x"], ram["player_y"]) == (start.player_x - n, start.player_y)
        assert ram["player_px"] == 8 * ram["player_x"] and ram["player_move"] == 0
    # the camera follows (SCX = its low byte); the player stays at the same screen cell
    assert read_ram(pyboy)["camera_x"] == start.camera_x - 24
    assert pyboy.memory[0xFF43] == (start.camera_x - 24) & 0xFF
    assert screen_tiles(pyboy)[8, 9] == TILE["PLAYER"]
    for n, key in enumerate("UUU", start=1):
        step(pyboy, model, key, f"U{n}")
    assert read_ram(pyboy)["player_y"] == start.player_y - 3
    assert pyboy.memory[0xFF42] == (start.camera_y - 24) & 0xFF  # SCY too
    before = read_ram(pyboy)
    for key in "AB":  # buttons do nothing but show in RAM_PAD
        step(pyboy, model, key, key)
    after = read_ram(pyboy)
    for name in ("player_x", "player_y", "player_px", "player_py", "camera_x", "camera_y"):
        assert after[name] == before[name]
    # holding a direction walks on, a tile per 4 frames: 16 frames held = 4 tiles
    pyboy.button_press("right")
    for f in range(16):
        pyboy.tick(1, False)
        model.run_frame(PAD_BIT["R"])
        check(pyboy, model, f"held right, frame {f + 1}")
    pyboy.button_release("right")
    pyboy.tick(1, False)
    model.run_frame(0)
    check(pyboy, model, "released")
    assert read_ram(pyboy)["player_x"] == after["player_x"] + 4
    check_timing(pyboy)


def test_wall_bump_only_turns(game):
    pyboy, model = game
    for n, key in enumerate("UUUUR", start=1):  # to the camp's top wall, then one tile right
        step(pyboy, model, key, f"move {n}")
    assert model.world[(model.player_y - 1) * W + model.player_x] == TILE["WALL"]
    before = read_ram(pyboy)
    assert before["player_dir"] == RIGHT
    step(pyboy, model, "U", "bump")
    after = read_ram(pyboy)
    assert (after["player_y"], after["player_py"]) == (before["player_y"], before["player_py"])
    assert after["player_dir"] == UP and after["player_move"] == 0


def test_gems_raise_the_score_in_bcd(game):
    pyboy, model = game
    positions, scroll = set(), set()
    taken = 0
    for n in range(400):
        before = read_ram(pyboy)
        step(pyboy, model, toward(model, gems(model)), f"step {n + 1}")
        after = read_ram(pyboy)
        positions.add((after["player_x"], after["player_y"]))
        scroll.add((pyboy.memory[0xFF43], pyboy.memory[0xFF42]))
        lo, hi = after["score_lo"], after["score_hi"]
        assert all(nibble <= 9 for nibble in (lo >> 4, lo & 15, hi >> 4, hi & 15)), (hi, lo)
        gained = before["gems_left"] - after["gems_left"]
        decoded = int(f"{hi:02X}{lo:02X}")
        assert decoded - int(f"{before['score_hi']:02X}{before['score_lo']:02X}") == 10 * gained
        taken += gained
        if taken == 11:
            break
    assert taken == 11
    ram = read_ram(pyboy)
    assert (ram["score_lo"], ram["score_hi"]) == (0x10, 0x01)  # 0110: little-endian BCD, carried
    assert len(positions) > 20 and len(scroll) > 10
    check_timing(pyboy)


def test_bats_cost_lives_until_game_over(game):
    pyboy, model = game
    lives, saw_bat = 3, False
    for n in range(1500):
        step(pyboy, model, toward(model, bats(model)), f"step {n + 1}")
        ram = read_ram(pyboy)
        saw_bat |= TILE["BAT"] in screen_tiles(pyboy)
        if ram["lives"] < lives:
            assert ram["lives"] == lives - 1 and ram["deaths"] == 3 - ram["lives"]
            lives = ram["lives"]
            if lives == 0:
                break
            # respawned at the camp, invulnerable, the view being redrawn (blank background)
            assert (ram["player_x"], ram["player_y"]) == model.start
            assert ram["redraw"] < ROWS and pyboy.memory[0xFF47] == C["BGP_BLANK"]
            assert ram["invuln"] == C["INVULN_FRAMES"]  # counts down once the view is back
    assert saw_bat, "a bat sprite showed in the tile observation"
    ram = read_ram(pyboy)
    assert (ram["lives"], ram["mode"]) == (0, GAME_OVER)
    assert pyboy.memory[0x9C00 + C["HUD_GAME_OVER_X"] : 0x9C14] == GAME_OVER_TEXT
    for key in "LRUD":  # game over: input is ignored, nothing moves
        step(pyboy, model, key, f"after game over {key}")
    after = read_ram(pyboy)
    frozen = set(FIELDS) - {"frame", "pad", "pad_prev"}
    assert {k: after[k] for k in frozen} == {k: ram[k] for k in frozen}
    assert after["bats"] == ram["bats"]
    check_timing(pyboy)


def poke(pyboy, model: Model, **values: int) -> None:
    """Set RAM fields in the game and the model alike (the HUD shows them at the next change)."""
    for name, value in values.items():
        pyboy.memory[ADDR[name]] = value
        setattr(model, name, value)


def take_gem(pyboy, model: Model, where: str) -> None:
    left = model.gems_left
    while model.gems_left == left:
        step(pyboy, model, toward(model, gems(model)), where, hud=False)


def score_bytes(pyboy) -> tuple[int, int]:
    ram = read_ram(pyboy)
    return ram["score_lo"], ram["score_hi"]


def test_last_gem_starts_a_new_round_and_the_score_stops_at_9999(game):
    pyboy, model = game
    total = WORLD_MAP.count("*")
    poke(pyboy, model, gems_left=2, score_lo=0x90, score_hi=0x09)  # as if 101 gems were taken
    take_gem(pyboy, model, "gem 0990 -> 1000")
    assert score_bytes(pyboy) == (0x00, 0x10)  # the carry runs through both bytes
    take_gem(pyboy, model, "the last gem")
    ram = read_ram(pyboy)
    assert score_bytes(pyboy) == (0x10, 0x10)
    assert (ram["round"], ram["gems_left"], ram["redraw"]) == (1, total, 0)
    while model.redraw < ROWS:  # frozen while the view is redrawn with every gem back
        step(pyboy, model, "L", "redraw")
        assert read_ram(pyboy)["player_move"] == 0
    world = pyboy.memory[ADDR["world"] : ADDR["world"] + W * H]
    assert world.count(TILE["GEM"]) == total
    poke(pyboy, model, score_lo=0x90, score_hi=0x99)
    take_gem(pyboy, model, "gem 9990 -> 9999")
    assert score_bytes(pyboy) == (0x99, 0x99)
    take_gem(pyboy, model, "gem at 9999")
    assert score_bytes(pyboy) == (0x99, 0x99)
    step(pyboy, model, None, "HUD")  # the HUD showed every change
    check_timing(pyboy)


def test_deterministic_from_power_on():
    rng = random.Random(7)
    keys = [rng.choice([None, "U", "D", "L", "R", "A"]) for _ in range(300)]
    runs = []
    for _ in range(2):
        pyboy, frames = boot()
        for key in keys:
            if key:
                pyboy.button_press(BUTTON[key])
            pyboy.tick(2, False)
            if key:
                pyboy.button_release(BUTTON[key])
            pyboy.tick(2, False)
        mem = pyboy.memory
        runs.append((frames, mem[0xC000:0xE000], mem[0x8000:0xA000], mem[0xFE00:0xFEA0]))
        pyboy.stop(save=False)
    assert runs[0] == runs[1]
