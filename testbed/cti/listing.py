"""Listing a MISP event on a running network (`testbed cti publish`): checked with pymisp, put in
the publishing organization's intelligence store through its Solver, listed by its publisher
account with its Solver authorized to deliver it."""

from __future__ import annotations

from pathlib import Path

from testbed.errors import StateError


def publish_event_file(net, org: str, event: Path, *, title: str | None = None, price_wei: int = 0,
                       supply: int = 10) -> dict:
    """List the MISP event in `event` for `org`; returns the listing (token, uuid, content hash, block, ...)."""
    from testbed.contracts import deployment_of
    from testbed.cti import CtiClient
    from testbed.cti.deploy import connect
    from testbed.cti.misp import MispEventError, parse_event
    from testbed.solver_plugin import require_solver_plugin
    from testbed.spec.loader import read_text_file

    raw = read_text_file(event, hint="give a MISP event JSON file").encode()
    try:
        parsed = parse_event(raw)
    except MispEventError as exc:
        raise StateError(f"{event}: {exc}", hint="export the event from MISP as JSON (Event with Attribute/Object)") from None
    if org not in [o.name for o in net.members]:
        raise StateError(f"--org {org!r} is not a member of {net.name!r}",
                         hint=f"members: {', '.join(o.name for o in net.members)}")
    deployment = deployment_of(net)
    roles = net.keys.of(org)
    misp_uuid, content = require_solver_plugin().store_intel(net, org, raw)  # the Solver owns the store
    client = CtiClient(connect(net.org_rpc_urls(org)), deployment, roles.publisher.private_key)
    listed_title = (title or parsed.info or "indicators")[:200]
    sent = client.publish(misp_uuid, listed_title, content, price_wei, supply, solvers=[roles.solver.address])
    return {"token": sent.result, "misp_uuid": misp_uuid, "content_hash": "0x" + content.hex(), "title": listed_title,
            "block": sent.block, "tx": sent.tx_hash, "attributes": len(parsed.attributes),
            "objects": [o.name for o in parsed.objects]}
