"""The game adapters a spec may name, with their reward terms, so that `trainer validate` and
`trainer render` reject `adapter: metroid` or `reward: {coins: 1}` before anything is sent.

The adapters themselves live in `trainer.games` (with PyBoy behind them); spec/ imports nothing
of ours, so it keeps this table of names, and tests/test_ram_spec.py checks it against
`trainer.games.ADAPTERS` and each adapter's `reward_weights`. The `ram` adapter's terms are the
names in `game.ram.rewards`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.spec.game_ram import RamSpec

RAM_ADAPTER = "ram"

#: Adapter name → its reward terms (None: declared in `game.ram`).
ADAPTER_TERMS: dict[str, tuple[str, ...] | None] = {
    "dungeon": ("coin", "key", "door", "room", "win", "step"),
    "generic": ("new_screen", "step"),
    "ram": None,
    "zelda": ("screen", "rupee", "heart", "heart_piece", "item", "damage", "death", "step"),
}


def check_game_settings(
    adapter: str, reward: Mapping[str, float], ram: RamSpec | None, state: str | None
) -> None:
    """`ValueError` whose message starts with the `game.` key at fault (relative to `game`)."""
    if adapter not in ADAPTER_TERMS:
        raise ValueError(
            f"adapter must be one of {', '.join(sorted(ADAPTER_TERMS))} (got {adapter!r}); "
            "`ram` declares any game's rewards on RAM addresses in game.ram"
        )
    if adapter == RAM_ADAPTER and ram is None:
        raise ValueError(
            "ram is required with adapter: ram (rewards, and optionally done and start); see "
            "the README, 'Bring your own game'"
        )
    if adapter != RAM_ADAPTER and ram is not None:
        raise ValueError(
            f"ram applies only to adapter: ram (this spec uses adapter: {adapter}); remove "
            "game.ram or set game.adapter: ram"
        )
    terms = ram.term_names() if ram is not None else ADAPTER_TERMS[adapter] or ()
    for name in reward:
        if name not in terms:
            raise ValueError(
                f"reward.{name} names no reward term of adapter {adapter!r} (its terms: "
                f"{', '.join(terms)})"
            )
    if ram is not None and ram.start is not None and state:
        raise ValueError(
            "state conflicts with ram.start (both say where episodes start): keep one; "
            "`trainer make-state` plays ram.start and writes a state file for game.state"
        )
