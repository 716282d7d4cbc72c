"""`game.ram`: a game's rewards, episode ends and start of play declared on RAM addresses, for
`game.adapter: ram` (the adapter that reads them is `trainer.games.ram`).

Addresses are Game Boy bus addresses in 0x8000–0xFFFF (Pan Docs, Memory Map: below 0x8000 is
cartridge ROM, which never changes): VRAM, cartridge RAM (SRAM, 0xA000–0xBFFF), work RAM
(WRAM, 0xC000–0xDFFF), OAM, I/O and HRAM. They are written as integers or hex strings
("0xC0A0", or "$C0A0" as in disassemblies) and normalized to "0xC0A0".
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    model_validator,
)

from trainer.spec.base import SpecModel

RAM_START, BUS_END = 0x8000, 0x10000
#: Regions where `bank` selects a bank, with the banks that exist (Pan Docs, Memory Map).
BANKED_REGIONS = {
    "SRAM": (0xA000, 0xC000, range(0, 16)),  # cartridge RAM, up to 16 banks (MBC5)
    "WRAM": (0xD000, 0xE000, range(1, 8)),  # CGB work RAM banks 1–7
}
#: Names the env itself puts in an episode's info: a term named so would hide them.
RESERVED_NAMES = ("episode_return", "episode_length", "env_index")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")

#: Frames a bare button in `start.buttons` is held (then released): long enough for games that
#: read the joypad every other frame or only on a press edge.
DEFAULT_PRESS_FRAMES = 4


def parse_int(value: Any) -> int:
    """An integer, or a string: "0xC0A0" / "$C0A0" (hex) or "49312" (decimal)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if text[:2].lower() == "0x":
                return int(text[2:], 16)
            if text.startswith("$"):
                return int(text[1:], 16)
            if text.isdigit():
                return int(text)
        except ValueError:
            pass
    raise ValueError("must be an integer or a hex string like '0xC0A0'")


def _in_ram(value: int) -> int:
    if not RAM_START <= value < BUS_END:
        raise ValueError(
            "must be a RAM address in 0x8000–0xFFFF (0x0000–0x7FFF is cartridge ROM, which never "
            "changes; trainer ram-search ROM lists candidate addresses)"
        )
    return value


def _byte(value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError("must be a byte, 0–255 (0x00–0xFF)")
    return value


def hex_address(value: int) -> str:
    return f"0x{value:04X}"


#: What `parse_int` accepts, for the JSON Schema (editors, the Helm chart's values schema).
IntInput = int | Annotated[str, Field(pattern=r"^\s*(0[xX][0-9A-Fa-f]+|\$[0-9A-Fa-f]+|[0-9]+)\s*$")]
_parse = BeforeValidator(parse_int, json_schema_input_type=IntInput)
Int = Annotated[int, _parse]
Address = Annotated[int, _parse, AfterValidator(_in_ram), PlainSerializer(hex_address)]
Byte = Annotated[int, _parse, AfterValidator(_byte)]
Name = Annotated[str, Field(pattern=NAME.pattern)]


class RamValue(SpecModel):
    """Where a number lives in RAM and how to decode it (shared by rewards and conditions)."""

    address: Address | None = Field(
        None, description='Address of the value (its first byte), e.g. "0xC0A0".'
    )
    width: int = Field(1, ge=1, le=4, description="Bytes the value spans (1–4).")
    endian: Literal["little", "big"] = Field(
        "little",
        description="Byte order of a value wider than one byte (`little`: lowest byte first, as "
        "the Game Boy's CPU stores 16-bit numbers).",
    )
    encoding: Literal["binary", "bcd"] = Field(
        "binary",
        description="`binary`, or `bcd`: two decimal digits per byte (scores and money in many "
        "games; 0x12 0x34 big-endian reads 1234).",
    )
    bank: int | None = Field(
        None,
        ge=0,
        description="Bank to read from, for banked RAM: cartridge RAM 0xA000–0xBFFF (banks "
        "0–15) or CGB work RAM 0xD000–0xDFFF (banks 1–7); default: the bank mapped at the time.",
    )
    mask: Byte | None = Field(
        None,
        description='AND-ed into every byte before decoding, e.g. "0x80" to keep one flag bit.',
    )

    def starts(self) -> list[tuple[str, int]]:
        """(key, first byte) of every value this item reads."""
        return [("address", self.address)] if self.address is not None else []

    def span(self) -> int:
        """Bytes read from each start."""
        return self.width

    def largest_value(self) -> int:
        return 10 ** (2 * self.width) - 1 if self.encoding == "bcd" else 256**self.width - 1

    @model_validator(mode="after")
    def _fits(self) -> RamValue:
        for key, start in self.starts():
            check_bytes(key, start, self.span(), self.bank)
        return self


def check_bytes(key: str, start: int, length: int, bank: int | None) -> None:
    """`ValueError` naming `key` unless `start`..`start+length-1` lies on the bus (and in one
    banked region when `bank` is given)."""
    end = start + length
    if end > BUS_END:
        raise ValueError(
            f"{key} {hex_address(start)} + {length} byte(s) runs past 0xFFFF: lower the address, "
            "the width or the length"
        )
    if bank is None:
        return
    for region, (low, high, banks) in BANKED_REGIONS.items():
        if low <= start and end <= high:
            if bank not in banks:
                raise ValueError(
                    f"bank {bank} does not exist in {region} ({hex_address(low)}–"
                    f"{hex_address(high - 1)}: banks {banks.start}–{banks.stop - 1})"
                )
            return
    raise ValueError(
        "bank applies only to cartridge RAM (0xA000–0xBFFF) and CGB work RAM (0xD000–0xDFFF), "
        f"with every byte inside one of them (got {hex_address(start)}, {length} bytes); remove "
        "bank to read what is mapped"
    )


class RamCondition(RamValue):
    """A test of one RAM value: `value` compared with what is read."""

    address: Address = Field(..., description="Address of the value (its first byte).")
    kind: Literal["equals", "not_equals", "less_than", "greater_than"] = Field(
        ..., description="Comparison of the value read with `value`."
    )
    value: Int = Field(..., description="The number compared with (decoded, after `mask`).")

    @model_validator(mode="after")
    def _value_readable(self) -> RamCondition:
        largest = self.largest_value()
        if not 0 <= self.value <= largest:
            raise ValueError(
                f"value {self.value} can never be read from {self.width} byte(s) of "
                f"{self.encoding} (0–{largest}): widen width or fix the value"
            )
        return self


class DoneCondition(RamCondition):
    """An episode end: the episode stops at the first step where the condition holds."""

    name: Name = Field(..., description="Name of the ending (letters, digits, '_').")
    truncate: bool = Field(
        False,
        description="true: a time-limit-like cut (the value after it is bootstrapped); false: a "
        "real ending (death, game over, win), no value beyond it.",
    )
    when: list[RamCondition] = Field(
        default_factory=list,
        description="Further conditions that must hold too (e.g. health 0 counts as death only "
        "while the game mode is 'playing').",
    )


RewardKind = Literal["delta", "increase", "decrease", "bits", "distinct", "equals", "step"]


class RewardTerm(RamValue):
    """One reward term; its weight is `scale` unless `game.reward.<name>` overrides it."""

    name: Name = Field(
        ...,
        description="Term name: `game.reward.<name>` overrides its scale; its share of each "
        "episode's return is logged as `episode/<name>`.",
    )
    kind: RewardKind = Field(
        ...,
        description="`delta`: after − before; `increase` / `decrease`: the rise / the fall only "
        "(as a positive amount); `bits`: change in the number of set bits over `length` bytes; "
        "`distinct`: 1 the first time in an episode a value (or the tuple over `addresses`) is "
        "seen; `equals`: 1 when the value becomes `value`; `step`: 1 every step (no address).",
    )
    addresses: list[Address] | None = Field(
        None,
        min_length=1,
        description="Several addresses instead of `address`: `distinct` counts tuples of their "
        "values; the other kinds sum the amounts of each.",
    )
    length: int = Field(
        1, ge=1, le=0x2000, description="`bits` only: bytes counted from `address`."
    )
    value: Int | None = Field(None, description="`equals` only: the value to become.")
    scale: float = Field(1.0, description="Weight of the term (reward per unit of amount).")
    decrease_scale: float | None = Field(
        None,
        description="`delta` and `bits` only: weight of a fall (default: `scale`); e.g. 0 to "
        "ignore falls, or larger to punish losing more than gaining.",
    )
    when: list[RamCondition] = Field(
        default_factory=list,
        description="Conditions that must all hold, before and after the step, for the term to "
        "count (e.g. only while the game mode is 'playing'); `equals` fires when value and "
        "conditions start to hold together.",
    )

    def starts(self) -> list[tuple[str, int]]:
        if self.addresses is not None:
            return [(f"addresses.{i}", start) for i, start in enumerate(self.addresses)]
        return super().starts()

    def span(self) -> int:
        return self.length if self.kind == "bits" else self.width

    @model_validator(mode="before")
    @classmethod
    def _where_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") != "step":
            if data.get("address") is None and data.get("addresses") is None:
                raise ValueError("address is required (or addresses, a list)")
            if data.get("address") is not None and data.get("addresses") is not None:
                raise ValueError("address and addresses are both given: keep one")
        return data

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> RewardTerm:
        # Checked on values, not on the keys written: a normalized spec (defaults filled in,
        # as `trainer validate` prints it and the pod receives it) must validate again.
        kind = self.kind
        misplaced = {
            "value": self.value is not None and kind != "equals",
            "decrease_scale": self.decrease_scale is not None and kind not in ("delta", "bits"),
            "length": self.length != 1 and kind != "bits",
        }
        for key, wrong in misplaced.items():
            if wrong:
                raise ValueError(f"{key} does not apply to kind {kind!r}")
        if kind == "step":
            reads = {
                "address": self.address is not None,
                "addresses": self.addresses is not None,
                "width": self.width != 1,
                "bank": self.bank is not None,
                "mask": self.mask is not None,
                "when": bool(self.when),
            }
            for key, given in reads.items():
                if given:
                    raise ValueError(f"{key} does not apply: kind 'step' reads no RAM")
        if kind == "bits" and self.width != 1:
            raise ValueError("width does not apply to kind 'bits': give length (bytes counted)")
        if kind == "equals":
            if self.value is None:
                raise ValueError("value is required for kind 'equals'")
            if not 0 <= self.value <= self.largest_value():
                raise ValueError(
                    f"value {self.value} can never be read from {self.width} byte(s) of "
                    f"{self.encoding} (0–{self.largest_value()})"
                )
        return self


StartButton = Literal["up", "down", "left", "right", "a", "b", "start", "select"]


class StartStep(SpecModel):
    """One step of `start.buttons`: a button held for `frames`, or a wait."""

    press: StartButton | None = Field(
        None, description="Button to hold for `frames`, then release (for one frame)."
    )
    frames: int = Field(
        DEFAULT_PRESS_FRAMES,
        ge=1,
        le=100_000,
        description="Frames the button is held (with `press`).",
    )
    wait: int | None = Field(
        None, ge=1, le=100_000, description="Frames to run with no button held."
    )

    @model_validator(mode="after")
    def _one_action(self) -> StartStep:
        if (self.press is None) == (self.wait is None):
            raise ValueError(
                "give a button name (e.g. start), {press: a, frames: 10} or {wait: 60}"
            )
        if self.wait is not None and self.frames != DEFAULT_PRESS_FRAMES:
            raise ValueError("frames goes with press; a wait counts its own frames")
        return self


def _bare_button(data: Any) -> Any:
    # `start.buttons: [start, {wait: 60}, a]`: a bare name is a press of the default length.
    return {"press": data} if isinstance(data, str) else data


StartStepInput = Annotated[
    StartStep, BeforeValidator(_bare_button, json_schema_input_type=StartButton | StartStep)
]


class RamStart(SpecModel):
    """How to get from power-on to the first playable frame (instead of `game.state`)."""

    buttons: list[StartStepInput] = Field(
        default_factory=list,
        description="Presses and waits after power-on (PyBoy's boot ROM included), e.g. "
        "`[{wait: 120}, start, {wait: 60}, a]`; a bare button is held "
        f"{DEFAULT_PRESS_FRAMES} frames.",
    )
    until: list[RamCondition] = Field(
        default_factory=list,
        description="After the buttons, run frame by frame until these conditions all hold "
        "(e.g. the game's mode byte says 'playing'); an error after `max_frames`.",
    )
    max_frames: int = Field(
        3600, ge=1, description="Frames to wait for `until` before giving up with an error."
    )

    @model_validator(mode="after")
    def _something_to_play(self) -> RamStart:
        if not self.buttons and not self.until:
            raise ValueError(
                "needs buttons or until (e.g. buttons: [{wait: 240}]); without a start section "
                "the game runs 240 frames after power-on"
            )
        return self


class RamSpec(SpecModel):
    """`game.ram`: the `ram` adapter's reward terms, episode ends and start of play."""

    rewards: list[RewardTerm] = Field(
        ...,
        min_length=1,
        description="Reward terms, summed (each weighted by `scale` or `game.reward.<name>`).",
    )
    done: list[DoneCondition] = Field(
        default_factory=list,
        description="Episode ends: the first that holds ends the episode (besides "
        "`env.episode_length`).",
    )
    start: RamStart | None = Field(
        None,
        description="Start of play from power-on (else `game.state`, else 240 frames after "
        "power-on); `trainer make-state` plays it and saves a state with a screenshot.",
    )

    @model_validator(mode="after")
    def _names_unique(self) -> RamSpec:
        for section in ("rewards", "done"):
            seen: dict[str, int] = {}
            for index, item in enumerate(getattr(self, section)):
                if item.name in RESERVED_NAMES:
                    raise ValueError(
                        f"{section}.{index}.name {item.name!r} is reserved (the env logs it); "
                        "pick another name"
                    )
                if item.name in seen:
                    raise ValueError(
                        f"{section}.{index}.name {item.name!r} is used twice (also "
                        f"{section}.{seen[item.name]}): every term needs its own name"
                    )
                seen[item.name] = index
        return self

    def term_names(self) -> list[str]:
        return [term.name for term in self.rewards]
