"""The base of every spec model: unknown keys are errors, and a number is never a boolean.

YAML reads `true`/`false` (and `yes`/`no` in YAML 1.1) as booleans, and Pydantic's lax mode
takes a boolean for an int or a float: `num_envs: true` would train with 1 env and
`learning_rate: false` with 0. kubectl and Helm's schemas refuse a boolean where a number goes;
so do we, naming the key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class SpecModel(BaseModel):
    # allow_inf_nan=False: `learning_rate: inf` (or .nan) would train to NaN weights.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        items = value if isinstance(value, list) else [value]
        items = list(value.values()) if isinstance(value, dict) else items  # a map's values
        if info.field_name and any(isinstance(item, bool) for item in items):
            if takes_numbers_only(cls.model_fields[info.field_name].annotation):
                raise ValueError("must be a number, not true/false")
        return value


def takes_numbers_only(annotation: Any) -> bool:
    """Whether a field's type (or its list's items, or its map's values) takes int or float but
    not bool."""
    leaves = _leaf_types(annotation)
    return bool(leaves & {int, float}) and bool not in leaves


def _leaf_types(annotation: Any) -> set[Any]:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _leaf_types(args[0])
    if origin is Literal:
        return {type(arg) for arg in args}
    if not args:
        return {annotation}
    if origin is dict:  # a map's values; its keys are strings
        return _leaf_types(args[1])
    return set().union(*(_leaf_types(arg) for arg in args))


def raise_problem(problem: str | None) -> None:
    """A rule's problem (`kube_rules`, `pod`, …) → the ValueError Pydantic reports under the
    field's key; None passes."""
    if problem:
        raise ValueError(problem)
