"""Loading a job spec: YAML with line numbers, `TRAIN_*` and `--set` overrides, and errors that
name the file, the line, the dotted key, the bad value and what is allowed.

Sources and their precedence, lowest first: the YAML file, then `TRAIN_*` environment variables
(the seed's Make variables), then `--set dotted.key=value` from the command line.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from trainer.spec.game_ram import NAME
from trainer.spec.kube_rules import QUANTITY
from trainer.spec.models import JobSpec, SpecError

#: The seed's Make variables → spec keys (the README documents them).
ENV_OVERRIDES: dict[str, str] = {
    "TRAIN_STEPS": "ppo.total_steps",
    "TRAIN_ENVS": "env.num_envs",
    "TRAIN_EPISODE_LENGTH": "env.episode_length",
    "TRAIN_UPDATE_EPOCHS": "ppo.update_epochs",
    "TRAIN_BATCH_SIZE": "ppo.batch_size",
    "TRAIN_OUTPUT_DIR": "checkpoint.dir",
}


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, which reads YAML 1.1, plus YAML 1.2's exponent floats (`1e6`,
    `1.5e3`: YAML 1.1 needs a dot and a signed exponent): `total_steps: 1e6` is a number to Helm,
    JSON and YAML 1.2, but was a string here, refused as "not a valid integer"."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def load_spec(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobSpec:
    """Read a YAML job spec, apply `TRAIN_*` environment overrides, then `--set` overrides.

    Raises `SpecError` whose message names the file, the line, the dotted key, the bad value and
    what is allowed (e.g. `configs/x.yaml:12: ppo.update_epochs: must be ≥ 1 (got -1)`).
    """
    path, text = _read_spec_text(path)
    try:
        data = yaml.load(text, SpecLoader)  # noqa: S506 - a SafeLoader subclass
        lines, duplicates = _key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: invalid YAML: {problem}"]) from None
    if duplicates:
        # YAML keeps the last of two equal keys without a word (kubectl and Helm refuse them):
        # half of what the user wrote would be silently ignored.
        raise SpecError(
            [
                f"{path}:{line}: {key}: given twice (first on line {first}); YAML keeps only the "
                "last: merge them into one"
                for key, line, first in duplicates
            ]
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            [
                f"{path}:1: the spec must be a mapping of keys (name, game, env, ppo, …), got {type(data).__name__}"
            ]
        )
    sources: dict[str, str] = {}
    env_pairs = [
        (key, value, f"environment {var}={value}")
        for var, key in ENV_OVERRIDES.items()
        if (value := (os.environ if environ is None else environ).get(var, "")) != ""
    ]
    cli_pairs = []
    for item in overrides:
        if "=" not in item:
            raise SpecError(
                [f"--set {item}: expected dotted.key=value (e.g. --set ppo.total_steps=50000)"]
            )
        key, value = item.split("=", 1)
        cli_pairs.append((key.strip(), value, f"--set {item}"))
    for key, raw, source in env_pairs + cli_pairs:
        set_dotted(data, key, _parse_scalar(raw), source)
        sources[re.sub(r"\[(\d+)\]", r".\1", key)] = source  # errors name items as key.N
    return validate_spec(data, origin=str(path), lines=lines, sources=sources)


#: `-` as the spec's path: read it from standard input, as `kubectl apply -f -` does.
STDIN = "-"


def _read_spec_text(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """(the name errors give the spec, its text): a file, or standard input for `-`."""
    if str(path) == STDIN:
        try:
            return Path("<stdin>"), sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise SpecError([f"<stdin>: not UTF-8 text (byte {exc.start})"]) from None
    path = Path(path)
    try:
        return path, path.read_text()
    except FileNotFoundError:
        raise SpecError(
            [
                f"{path}: no such file; pass the path of a job spec YAML (see configs/), or - to read it from standard input"
            ]
        ) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [f"{path}: not UTF-8 text (byte {exc.start}): pass the path of a job spec YAML"]
        ) from None


def validate_spec(
    data: Mapping[str, Any],
    origin: str = "<spec>",
    lines: Mapping[str, int] | None = None,
    sources: Mapping[str, str] | None = None,
) -> JobSpec:
    """Validate a mapping into a `JobSpec`, translating Pydantic errors to our message format."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(exc, data, origin, lines or {}, sources or {})) from None


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.load(raw, SpecLoader) if raw.strip() else raw  # noqa: S506 - SafeLoader
    except yaml.YAMLError:
        return raw


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str = "override") -> None:
    """Set `data["a"]["b"] = value` for `key` "a.b", creating mappings on the way; `SpecError`
    naming `source` for a key the spec does not have (with the nearest valid one). An item of a
    list is set as Helm's `--set` does: `game.ram.rewards[0].scale=2`."""
    if "[" in key:
        _set_indexed(data, key, value, source)
        return
    parts = key.split(".")
    valid = _valid_paths()
    if key not in valid and not _is_free_map_key(key):
        hint = _suggest(key, list(valid))
        raise SpecError([f"{source}: unknown key {key!r}{hint}"])
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError([f"{source}: {part!r} is not a mapping in the spec"])
        node = child
    node[parts[-1]] = value


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PIECE = re.compile(rf"^({_NAME})((?:\[\d+\])*)$")


def _indexed_parts(key: str) -> list[str | int] | None:
    """'game.ram.rewards[0].scale' → ['game', 'ram', 'rewards', 0, 'scale']; None if malformed."""
    parts: list[str | int] = []
    for piece in key.split("."):
        match = _PIECE.match(piece)
        if match is None:
            return None
        parts.append(match.group(1))
        parts.extend(int(index) for index in re.findall(r"\d+", match.group(2)))
    return parts


def _join(parts: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _set_indexed(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """`set_dotted` for a key with list indices: each name must be a field of the spec's model
    there, and each index an item the spec already holds (a list is not padded with nulls, as
    Helm's `--set` would: set the whole list instead, `--set key='[…]'`)."""
    parts = _indexed_parts(key)
    if parts is None:
        raise SpecError([f"{source}: malformed key {key!r}: use dotted.names and list[0] indices"])
    model: type[BaseModel] | None = JobSpec
    node: Any = data
    is_list = False
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        here = _join(parts[: position + 1])
        if isinstance(part, int):
            if not is_list:
                raise SpecError([f"{source}: {_join(parts[:position])} is not a list"])
            if not isinstance(node, list) or part >= len(node):
                held = len(node) if isinstance(node, list) else 0
                raise SpecError(
                    [
                        f"{source}: {_join(parts[:position])} holds {held} item(s), no [{part}]; "
                        f"set the whole list: --set {_join(parts[:position])}='[…]'"
                    ]
                )
        else:
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                raise SpecError([f"{source}: unknown key {here!r}"])
            model = model_of(field.annotation)
            is_list = any(
                get_origin(t) is list for t in (field.annotation, *get_args(field.annotation))
            )
            if not isinstance(node, dict):
                raise SpecError([f"{source}: {_join(parts[:position])} is not a mapping"])
            if not last and node.get(part) is None and isinstance(parts[position + 1], str):
                node[part] = {}
        if last:
            node[part] = value
            return
        node = node[part] if isinstance(part, int) else node.get(part)


def _is_free_map_key(key: str) -> bool:
    """Keys below free-form maps (game.reward.<term>, mlflow.tags.<tag>, …) are allowed."""
    return any(
        key.startswith(prefix + ".") and key.count(".") == prefix.count(".") + 1
        for prefix in _FREE_MAPS
    )


_FREE_MAPS = ("game.reward", "mlflow.tags", "kubernetes.node_selector", "kubernetes.labels")


def _valid_paths(
    model: type[BaseModel] = JobSpec, prefix: str = ""
) -> dict[str, type[BaseModel] | None]:
    """Every dotted key of the spec → the model it opens (None for leaves)."""
    out: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        sub = model_of(field.annotation, lists=False)
        out[dotted] = sub
        if sub is not None:
            out.update(_valid_paths(sub, dotted + "."))
    return out


def model_of(annotation: Any, lists: bool = True) -> type[BaseModel] | None:
    """The model a field opens: `M`, `M | None`, and with `lists` also `list[M]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if not lists and getattr(annotation, "__origin__", None) is list:
        return None
    for arg in get_args(annotation):
        if arg is not type(None) and (found := model_of(arg, lists)) is not None:
            return found
    return None


def _model_at(parts: Sequence[str | int]) -> type[BaseModel] | None:
    """The model at a location of the spec (list indices step into the items), or None."""
    model: type[BaseModel] | None = JobSpec
    for part in parts:
        if isinstance(part, int) or str(part).isdigit():
            continue
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            return None
        model = model_of(field.annotation)
    return model


def _present(data: Any, parts: Sequence[str]) -> bool:
    for part in parts:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False
    return True


def _named_key(message: str, dotted: str, data: Mapping[str, Any]) -> str | None:
    """A check's message starts with the key to change, absolute (`ppo.batch_size …`) or
    relative to where the check ran (`rewards.2.name …` inside `game.ram`): that key, if any."""
    named = message.split(" ", 1)[0].rstrip(":")
    if named in _valid_paths():
        return named
    candidate = f"{dotted}.{named}" if dotted else named
    parts = candidate.split(".")
    parent = _model_at(parts[:-1])
    if (parent is not None and parts[-1] in parent.model_fields) or _present(data, parts):
        return candidate
    return None


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:  # e.g. 'ppo_settings' → 'ppo': a known key the word starts with
        close = sorted(
            (c for c in choices if word.startswith(c) or c.startswith(word)), key=len, reverse=True
        )[:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key_lines(text: str) -> tuple[dict[str, int], list[tuple[str, int, int]]]:
    """Dotted key → 1-based line, from the YAML node tree (list items as key.N); and the keys
    given twice in one mapping, as (dotted key, line, line of the first)."""
    root = yaml.compose(text)
    out: dict[str, int] = {}
    duplicates: list[tuple[str, int, int]] = []

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}  # in this mapping: two `env:` blocks are separate mappings
            for key_node, value_node in node.value:
                dotted = f"{prefix}{key_node.value}"
                line = key_node.start_mark.line + 1
                if dotted in seen:
                    duplicates.append((dotted, line, seen[dotted]))
                seen[dotted] = out[dotted] = line
                walk(value_node, dotted + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[f"{prefix}{i}"] = item.start_mark.line + 1
                walk(item, f"{prefix}{i}.")

    if root is not None:
        walk(root, "")
    return out, duplicates


_PATTERN_MEANINGS = {
    QUANTITY.pattern: "must be a Kubernetes quantity such as 512Mi, 1.5Gi, 2 or 500m",
    NAME.pattern: "must be a name of at most 40 letters, digits and '_', starting with a letter",
}


def _format_errors(
    exc: ValidationError,
    data: Mapping[str, Any],
    origin: str,
    lines: Mapping[str, int],
    sources: Mapping[str, str],
) -> list[str]:
    problems = []
    for err in _merge_union_branches(exc.errors(include_url=False)):
        loc = _user_loc(err["loc"])
        dotted = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(loc[:-1])
            siblings = list(parent.model_fields) if parent is not None else []
            message = f"unknown key{_suggest(str(loc[-1]), siblings)}; allowed here: {', '.join(siblings)}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if kind == "string_pattern_mismatch":  # a regex says nothing to a user: say what
                message = _PATTERN_MEANINGS.get(err.get("ctx", {}).get("pattern"), message)
            if kind == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
                message = "must not be empty"
            message = re.sub(
                r"^List should have at least (\d+) items? after validation, not \d+",
                r"needs at least \1 item",
                message,
            )
            message = (
                message.replace("Input should be", "must be")
                .replace("greater than or equal to", "≥")
                .replace("less than or equal to", "≤")
                .replace("greater than", ">")
                .replace("less than", "<")
            )
            named = _named_key(message, dotted, data)
            if named is not None:
                # A cross-field check: its message starts with the key to change; point there.
                dotted, message = named, message.split(" ", 1)[1]
            elif "input" in err and not isinstance(err["input"], dict) and "(got " not in message:
                message += f" (got {_show(err['input'])})"
        where = origin
        source = next(
            (s for k, s in sources.items() if dotted == k or dotted.startswith(k + ".")), None
        )
        if source:
            where = source
        else:
            line = _nearest_line(dotted, lines)
            if line:
                where = f"{origin}:{line}"
        label = f"{dotted}: " if dotted else ""
        problems.append(f"{where}: {label}{message}")
    # One message per problem, in file order, without repeats (unions can report twice).
    return list(dict.fromkeys(problems))


def _user_loc(loc: Sequence[str | int]) -> list[str | int]:
    """`loc` without the union/tag branch names Pydantic adds (e.g. 'int', "literal['auto']")."""
    return [p for p in loc if not (isinstance(p, str) and (p in _BRANCHES or "[" in p))]


_BRANCHES = ("int", "str", "float", "bool")


def _merge_union_branches(errors: Sequence[Any]) -> list[Any]:
    """One error per key for a value no branch of a union takes: `num_envs: abc` says "must be an
    integer or 'auto'" once, not once per branch."""
    branches: dict[tuple[str | int, ...], list[Any]] = {}
    for err in errors:
        if len(_user_loc(err["loc"])) < len(err["loc"]):
            branches.setdefault(tuple(_user_loc(err["loc"])), []).append(err)
    merged: list[Any] = []
    for err in errors:
        group = branches.get(tuple(_user_loc(err["loc"])), [])
        if len(group) < 2:
            merged.append(err)
        elif err is group[0]:
            wanted = " or ".join(dict.fromkeys(_branch_expects(e) for e in group))
            merged.append(
                {
                    "type": "union",
                    "loc": err["loc"],
                    "msg": f"must be {wanted}",
                    "input": err["input"],
                }
            )
    return merged


def _branch_expects(err: Any) -> str:
    kind = err["type"]
    if kind == "literal_error":
        return str(err.get("ctx", {}).get("expected", "a listed value"))
    for prefix, what in (("int", "an integer"), ("float", "a number"), ("string", "a string")):
        if kind.startswith(prefix):
            return what
    return str(err["msg"]).removeprefix("Input should be ")


def _nearest_line(dotted: str, lines: Mapping[str, int]) -> int | None:
    parts = dotted.split(".") if dotted else []
    while parts:
        key = ".".join(parts)
        if key in lines:
            return lines[key]
        parts.pop()
    return None


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
