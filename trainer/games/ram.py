"""`ram`: any game, its rewards, episode ends and start of play declared in the spec
(`game.ram`, models in `trainer.spec.game_ram`) instead of written in Python.

The env calls `read` every step, so everything is planned at construction: the bytes every
term and condition needs are merged into a few contiguous spans (one `pyboy.memory[a:b]` slice
each; banked bytes through `pyboy.memory[bank, a:b]`, PyBoy docs, PyBoyMemoryView), and each
value becomes one small decoder over the concatenated bytes. A snapshot is a tuple of ints: the
decoded values, then one 0/1 per `distinct` term (new this step).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from trainer.games.base import GameAdapter, GameError, check_game_boy_rom
from trainer.games.generic import BOOT_FRAMES
from trainer.spec.game_ram import RamCondition, RamSpec, RamValue, RewardTerm, hex_address

#: Unbanked ranges closer than this are read as one slice (a slice costs more than a few bytes).
MERGE_GAP = 32
COMPARE: dict[str, Callable[[int, int], bool]] = {
    "equals": operator.eq,
    "not_equals": operator.ne,
    "less_than": operator.lt,
    "greater_than": operator.gt,
}
Snapshot = tuple[int, ...]
Decoder = Callable[[Sequence[int]], int]


# ---- reading: spans of memory and decoders over them -----------------------------------------
@dataclass(frozen=True)
class _Range:
    bank: int | None
    start: int
    length: int


class MemoryPlan:
    """The byte ranges a set of values needs, merged into few spans read as one slice each, and
    where each address lands in the concatenated buffer."""

    def __init__(self, ranges: Sequence[_Range]):
        merged: list[list[Any]] = []  # [bank, start, stop]
        for r in sorted(set(ranges), key=lambda r: (r.bank is not None, r.bank or 0, r.start)):
            gap = MERGE_GAP if r.bank is None else 0
            if merged and merged[-1][0] == r.bank and r.start <= merged[-1][2] + gap:
                merged[-1][2] = max(merged[-1][2], r.start + r.length)
            else:
                merged.append([r.bank, r.start, r.start + r.length])
        self.spans: list[tuple[int | None, int, int]] = [tuple(m) for m in merged]  # type: ignore[misc]
        self._positions = [0]
        for _, start, stop in self.spans:
            self._positions.append(self._positions[-1] + stop - start)
        self._slices = [slice(start, stop) for _, start, stop in self.spans]
        only = len(self.spans) == 1 and self.spans[0][0] is None
        self._single = self._slices[0] if only else None

    def offset(self, bank: int | None, address: int) -> int:
        for (span_bank, start, stop), position in zip(self.spans, self._positions, strict=False):
            if span_bank == bank and start <= address < stop:
                return position + address - start
        raise KeyError(hex_address(address))

    def read(self, memory: Any) -> list[int]:
        """The planned bytes, concatenated (`memory` is `pyboy.memory`)."""
        if self._single is not None:
            return memory[self._single]
        buffer: list[int] = []
        for (bank, start, stop), key in zip(self.spans, self._slices, strict=True):
            buffer += memory[key] if bank is None else read_banked(memory, bank, start, stop)
        return buffer


def read_banked(memory: Any, bank: int, start: int, stop: int) -> list[int]:
    """`pyboy.memory[bank, start:stop]`, except that PyBoy 2.8 refuses a banked slice reaching
    the end of its region (its bound check is `stop < size`): the last byte is read on its own."""
    head = memory[bank, start : stop - 1] if stop - 1 > start else []
    return [*head, memory[bank, stop - 1]]


def number_decoder(offset: int, item: RamValue) -> Decoder:
    """A value of `item.width` bytes at `offset`: byte order, mask and BCD applied."""
    positions = list(range(offset, offset + item.width))
    if item.endian == "little":
        positions.reverse()  # most significant byte first
    mask, base = item.mask, (100 if item.encoding == "bcd" else 256)
    if len(positions) == 1 and mask is None and base == 256:
        return operator.itemgetter(positions[0])

    def decode(buffer: Sequence[int]) -> int:
        value = 0
        for position in positions:
            byte = buffer[position] if mask is None else buffer[position] & mask
            value = value * base + ((byte >> 4) * 10 + (byte & 0x0F) if base == 100 else byte)
        return value

    return decode


def bit_count_decoder(offset: int, length: int, mask: int | None) -> Decoder:
    """Set bits over `length` bytes at `offset` (after `mask`): flags, badges, visited rooms."""
    stop = offset + length
    if length == 1 and mask is None:
        return lambda buffer: buffer[offset].bit_count()
    full_mask = int.from_bytes(bytes([0xFF if mask is None else mask]) * length, "big")
    return lambda buffer: (
        int.from_bytes(bytes(buffer[offset:stop]), "big") & full_mask
    ).bit_count()


# ---- terms and conditions -------------------------------------------------------------------
@dataclass(frozen=True)
class _Condition:
    slot: int
    compare: Callable[[int, int], bool]
    value: int
    label: str

    def holds(self, state: Sequence[int]) -> bool:
        return self.compare(state[self.slot], self.value)


@dataclass(frozen=True)
class _End:
    name: str
    condition: _Condition
    when: tuple[_Condition, ...]
    truncate: bool

    def holds(self, state: Sequence[int]) -> bool:
        return self.condition.holds(state) and _all_hold(self.when, state)


def _all_hold(conditions: Sequence[_Condition], state: Sequence[int]) -> bool:
    return all(c.holds(state) for c in conditions)


@dataclass
class _Term:
    name: str
    kind: str
    slots: tuple[int, ...]
    when: tuple[_Condition, ...]
    weight: float = 0.0
    decrease_weight: float = 0.0
    value: int = 0
    distinct_slot: int = -1

    def amount(self, before: Snapshot, after: Snapshot) -> float:
        """Unweighted amount of this term between two snapshots."""
        return self._amount(before, after, 1.0, 1.0)

    def contribution(self, before: Snapshot, after: Snapshot) -> float:
        """The term's share of the reward: the amount weighted (falls by `decrease_weight`)."""
        return self._amount(before, after, self.weight, self.decrease_weight)

    def _amount(self, before: Snapshot, after: Snapshot, up: float, down: float) -> float:
        kind = self.kind
        if kind == "step":
            return up
        if kind == "distinct":
            return up * after[self.distinct_slot]
        if kind == "equals":
            value, when = self.value, self.when
            became = sum(
                after[s] == value
                and _all_hold(when, after)
                and not (before[s] == value and _all_hold(when, before))
                for s in self.slots
            )
            return up * became
        if self.when and not (_all_hold(self.when, before) and _all_hold(self.when, after)):
            return 0.0
        total = 0.0
        for s in self.slots:
            change = after[s] - before[s]
            if kind == "increase":
                total += up * max(0, change)
            elif kind == "decrease":
                total += up * max(0, -change)
            else:  # delta, bits: signed, falls weighted apart
                total += (up if change >= 0 else down) * change
        return total


class _Planner:
    """Collects the values to read (one slot each) and builds the decoders once all are known."""

    def __init__(self) -> None:
        self.requests: list[tuple[RamValue, int, int]] = []  # item, start, bytes

    def add(self, item: RamValue, start: int, length: int) -> int:
        self.requests.append((item, start, length))
        return len(self.requests) - 1

    def condition(self, item: RamCondition, where: str) -> _Condition:
        slot = self.add(item, item.address, item.width)
        label = f"{where}: {hex_address(item.address)} {item.kind} {item.value}"
        return _Condition(slot, COMPARE[item.kind], item.value, label)

    def build(self) -> tuple[MemoryPlan, list[Decoder]]:
        plan = MemoryPlan([_Range(item.bank, start, n) for item, start, n in self.requests])
        decoders = []
        for item, start, length in self.requests:
            offset = plan.offset(item.bank, start)
            if isinstance(item, RewardTerm) and item.kind == "bits":
                decoders.append(bit_count_decoder(offset, length, item.mask))
            else:
                decoders.append(number_decoder(offset, item))
        return plan, decoders


class RamAdapter(GameAdapter):
    """The adapter `game.adapter: ram` makes, from the spec's `game.ram` section."""

    name: ClassVar[str] = "ram"
    reward_weights: ClassVar[dict[str, float]] = {}

    def __init__(
        self, reward_overrides: Mapping[str, float] | None = None, ram: RamSpec | None = None
    ):
        if ram is None:
            raise GameError(
                "game.ram: adapter 'ram' needs a game.ram section (rewards, done, start)"
            )
        self.spec = ram
        self.reward_weights = {term.name: term.scale for term in ram.rewards}  # type: ignore[misc]
        super().__init__(reward_overrides)
        planner = _Planner()
        self.terms = [self._term(planner, term, i) for i, term in enumerate(ram.rewards)]
        self.ends = [
            _End(
                done.name,
                planner.condition(done, f"game.ram.done.{i} ({done.name})"),
                tuple(
                    planner.condition(c, f"game.ram.done.{i}.when.{j}")
                    for j, c in enumerate(done.when)
                ),
                done.truncate,
            )
            for i, done in enumerate(ram.done)
        ]
        self.until = [
            planner.condition(c, f"game.ram.start.until.{i}")
            for i, c in enumerate(ram.start.until if ram.start else [])
        ]
        self._plan, self._decoders = planner.build()
        self._distinct = [t for t in self.terms if t.kind == "distinct"]
        for index, term in enumerate(self._distinct):
            term.distinct_slot = len(self._decoders) + index
        self._seen: list[set[tuple[int, ...]]] = [set() for _ in self._distinct]
        self._sums = dict.fromkeys(self.weights, 0.0)

    def _term(self, planner: _Planner, term: RewardTerm, index: int) -> _Term:
        length = term.span()
        slots = tuple(planner.add(term, start, length) for _, start in term.starts())
        when = tuple(
            planner.condition(c, f"game.ram.rewards.{index}.when.{j}")
            for j, c in enumerate(term.when)
        )
        weight = self.weights[term.name]
        decrease = term.decrease_scale if term.decrease_scale is not None else weight
        return _Term(term.name, term.kind, slots, when, weight, decrease, term.value or 0)

    # ---- identity and start -----------------------------------------------------------------
    def check_rom(self, rom: bytes, path: Path) -> None:
        check_game_boy_rom(rom, path)

    def configure(self, pyboy: Any) -> None:
        try:
            self._plan.read(pyboy.memory)
        except Exception as exc:  # PyBoy refuses banks the cartridge (or DMG mode) lacks
            raise GameError(
                f"game.ram: a banked address cannot be read on this ROM ({exc}); WRAM banks need "
                "a Game Boy Color game, cartridge RAM banks a cartridge with that much RAM"
            ) from None

    def boot(self, pyboy: Any) -> None:
        start = self.spec.start
        if start is None:
            pyboy.tick(BOOT_FRAMES, False)
            return
        for step in start.buttons:
            if step.press is not None:
                pyboy.button_press(step.press)
                pyboy.tick(step.frames, False)
                # A release takes effect on the next tick (PyBoy docs): give it one frame, so a
                # game that reacts to press edges sees two presses in [a, a].
                pyboy.button_release(step.press)
                pyboy.tick(1, False)
            else:
                pyboy.tick(step.wait, False)
        if not self.until:
            return
        for _ in range(start.max_frames):
            if _all_hold(self.until, self._values(pyboy)):
                return
            pyboy.tick(1, False)
        state = self._values(pyboy)
        failing = [c.label for c in self.until if not c.holds(state)]
        raise GameError(
            f"game.ram.start.until: not reached within {start.max_frames} frames after the "
            f"buttons ({'; '.join(failing)} does not hold; read {[state[c.slot] for c in self.until]}); "
            "check the buttons with `trainer make-state` (it saves a screenshot) or raise max_frames"
        )

    def reset(self) -> None:
        for seen in self._seen:
            seen.clear()
        for name in self._sums:
            self._sums[name] = 0.0

    # ---- per step ---------------------------------------------------------------------------
    def _values(self, pyboy: Any) -> list[int]:
        buffer = self._plan.read(pyboy.memory)
        return [decode(buffer) for decode in self._decoders]

    def read(self, pyboy: Any) -> Snapshot:
        values = self._values(pyboy)
        for term, seen in zip(self._distinct, self._seen, strict=True):
            key = tuple(values[s] for s in term.slots)
            new = key not in seen and _all_hold(term.when, values)
            if new:
                seen.add(key)
            values.append(int(new))
        return tuple(values)

    def reward_terms(self, before: Snapshot, after: Snapshot) -> dict[str, float]:
        return {term.name: term.amount(before, after) for term in self.terms}

    def reward_shares(self, before: Snapshot, after: Snapshot) -> dict[str, float]:
        # Overridden: a fall of a `delta`/`bits` term has its own weight (`decrease_scale`).
        return {term.name: term.contribution(before, after) for term in self.terms}

    def reward(self, before: Snapshot, after: Snapshot) -> float:
        # The env calls this once a step: the episode's shares add up here (`episode_stats`).
        total = 0.0
        for term in self.terms:
            share = term.contribution(before, after)
            self._sums[term.name] += share
            total += share
        return total

    def terminated(self, state: Snapshot) -> bool:
        return any(not end.truncate and end.holds(state) for end in self.ends)

    def truncated(self, state: Snapshot) -> bool:
        return any(end.truncate and end.holds(state) for end in self.ends)

    def end_reason(self, state: Snapshot) -> str:
        return "; ".join(end.condition.label for end in self.ends if end.holds(state)) or "none"

    def episode_stats(self, state: Snapshot) -> dict[str, float]:
        """Each term's share of the episode's return (`episode/<term>`), and which end held
        (`episode/done/<name>`: 1 or 0)."""
        ends = {f"done/{end.name}": float(end.holds(state)) for end in self.ends}
        return {**self._sums, **ends}
