"""What is on the Game Boy screen, read straight from VRAM and OAM (Pan Docs: LCDC, Scrolling,
VRAM Tile Maps, OAM). Used by the environment's `tiles` observation and by adapters that reward
what they see (e.g. `generic`)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: The visible screen in tiles.
SCREEN_TILES_W, SCREEN_TILES_H = 20, 18
#: Distinct tile ids in a tiles observation: 384 DMG tiles + the same again for sprites.
NUM_TILE_IDS = 768

LCDC, SCY, SCX = 0xFF40, 0xFF42, 0xFF43
TILEMAP_LOW, TILEMAP_HIGH, OAM = 0x9800, 0x9C00, 0xFE00
_COLS = np.arange(SCREEN_TILES_W)


def background_tiles(pyboy: Any) -> np.ndarray:
    """The visible 18×20 background tile ids (0–383), scrolling followed, without sprites."""
    mem = pyboy.memory
    lcdc, scy, scx = mem[LCDC], mem[SCY], mem[SCX]
    base = TILEMAP_HIGH if lcdc & 0x08 else TILEMAP_LOW
    # Only the 18 visible rows (two reads when they wrap past row 31); memory slices come back
    # as lists, and bytes() → frombuffer is the cheapest way into numpy.
    # VRAM bank 0 by name: on a Game Boy Color, plain addresses read the bank VBK selects, and
    # bank 1 holds the tile attributes, not the ids (Pan Docs, VRAM Banks; PyBoy memory[bank, a]).
    top = scy >> 3
    first = min(SCREEN_TILES_H, 32 - top)
    raw = bytes(mem[0, base + top * 32 : base + (top + first) * 32])
    if first < SCREEN_TILES_H:
        raw += bytes(mem[0, base : base + (SCREEN_TILES_H - first) * 32])
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(SCREEN_TILES_H, 32)
    tiles = rows[:, ((scx >> 3) + _COLS) % 32].astype(np.uint16)
    if not lcdc & 0x10:  # tile data at 0x8800, signed ids: PyBoy maps them to 256–383
        tiles = (tiles ^ 0x80) + 128
    return tiles


def screen_tiles(pyboy: Any) -> np.ndarray:
    """The visible 18×20 background tile ids with sprites on top: what PyBoy's `game_area()`
    returns for the visible screen with scrolling followed (ids 0–383, sprites as their tile
    id), read straight from VRAM and OAM with numpy. `game_area()` walks the 360 cells in
    Python: 72 µs per call against 26 µs here, more than the emulator's own 4 frames.
    Scroll registers are read once per frame (PyBoy reads them per scanline: games that change
    SCX/SCY mid-frame differ in the rows below the change)."""
    mem = pyboy.memory
    lcdc = mem[LCDC]
    tiles = background_tiles(pyboy)
    oam = np.frombuffer(bytes(mem[OAM : OAM + 160]), dtype=np.uint8).reshape(40, 4).astype(np.int32)
    height = 16 if lcdc & 0x04 else 8
    ys, xs = oam[:, 0] - 16, oam[:, 1] - 8
    visible = (ys > -height) & (ys < 144) & (xs > -8) & (xs < 160)
    for y, x, tile in zip(ys[visible] // 8, xs[visible] // 8, oam[visible, 2], strict=True):
        if 0 <= x < SCREEN_TILES_W:
            if 0 <= y < SCREEN_TILES_H:
                tiles[y, x] = tile
            if height == 16 and 0 <= y + 1 < SCREEN_TILES_H:
                tiles[y + 1, x] = tile + 1
    return tiles
