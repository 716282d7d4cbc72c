"""The spec described for people and editors: its JSON Schema and the README's reference tables,
both generated from the models' field descriptions."""

from __future__ import annotations

import json
from typing import Any, get_origin

from pydantic import BaseModel

from trainer.spec.loading import model_of
from trainer.spec.models import JobSpec


def json_schema() -> dict[str, Any]:
    """JSON Schema of the job spec (for editors: `trainer schema > spec.schema.json`)."""
    return JobSpec.model_json_schema()


def reference_markdown() -> str:
    """The spec reference (README): one table per section, from the models' descriptions. A
    list of objects gets a table for its items (`game.ram.rewards[]`); a model used in several
    places is described once and referred to elsewhere."""
    out: list[str] = []
    described: dict[type[BaseModel], str] = {}

    def default_of(field: Any) -> str:
        if field.is_required():
            return "*required*"
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            return ""
        return f"`{json.dumps(value)}`"

    def table(model: type[BaseModel], prefix: str) -> None:
        described[model] = prefix.rstrip(".")
        rows = []
        nested = []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((f"{prefix}{name}", ann))
                continue
            description = (field.description or "").replace("|", "\\|")
            sub = model_of(ann)
            if sub is not None:
                key = f"{prefix}{name}" + ("[]" if get_origin(ann) is list else "")
                if sub in described:
                    description += f" Each as in `{described[sub]}`."
                else:
                    nested.append((key, sub))
            rows.append(f"| `{prefix}{name}` | {default_of(field)} | {description} |")
        if rows:
            out.append(f"#### `{prefix.rstrip('.') or 'top level'}`\n")
            out.append("| key | default | meaning |\n|---|---|---|")
            out.extend(rows)
            out.append("")
        for dotted, sub in nested:
            if sub not in described:
                table(sub, dotted + ".")

    table(JobSpec, "")
    return "\n".join(out).rstrip() + "\n"
