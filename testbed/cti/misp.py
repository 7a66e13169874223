"""MISP events, as the consortium lists and delivers them: parsed and checked with pymisp, and
flattened to comparable rows (every attribute, standalone or inside a MISP object).

The harness checks an event a scenario or `testbed cti publish` names before it is listed; the
Solver checks what its store holds before delivering and the consumer what it received
(solver/intel.py wraps `parse_event` in its own error type).
"""

from __future__ import annotations

import json

from pymisp import MISPEvent


class MispEventError(ValueError):
    """Not a usable MISP event; the message says what is wrong."""


def parse_event(raw: bytes | str, misp_uuid: str | None = None) -> MISPEvent:
    """Parse and check a MISP event (a JSON object, bare or under "Event"): it has a uuid (the
    listed one, if given) and at least one attribute or object."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MispEventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MispEventError("not a MISP event: the JSON is not an object")
    body = data.get("Event", data)
    if not isinstance(body, dict) or "uuid" not in body:
        raise MispEventError("not a MISP event: no uuid")
    event = MISPEvent()
    try:
        event.from_dict(**data)
    except Exception as exc:  # pymisp raises several types (NewEventError, NewAttributeError, ...)
        raise MispEventError(f"not a valid MISP event: {exc}") from None
    if misp_uuid is not None and str(event.uuid).lower() != misp_uuid.lower():
        raise MispEventError(f"MISP event uuid {event.uuid} is not the listed {misp_uuid}")
    if not event.attributes and not event.objects:
        raise MispEventError(f"MISP event {event.uuid} has no attributes or objects")
    return event


def attribute_rows(event: MISPEvent) -> list[tuple]:
    """Every attribute of the event, standalone ones and those of its objects, as sorted rows
    (object name, relation, type, category, value, to_ids, comment): equal rows, same intelligence."""
    rows = [("", "", a.type, a.category, str(a.value), bool(a.to_ids), a.get("comment") or "") for a in event.attributes]
    for obj in event.objects:
        rows += [(obj.name, a.object_relation or "", a.type, a.category, str(a.value), bool(a.to_ids), a.get("comment") or "")
                 for a in obj.attributes]
    return sorted(rows)
