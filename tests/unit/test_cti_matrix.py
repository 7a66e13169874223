"""Role x function matrix: every state-changing function, called by

- outsider: an account of no member org                      -> NotMember (or the contract-only error)
- no_role:  a member account of the right org without the role -> MissingRole
- wrong_org: the right role, but the wrong org for that target -> the org-specific error
- right:    the account meant to call it                       -> success, with its effect checked

Columns are left out where they cannot exist (publishing or proposing is not bound to a
target org; membership votes need no role). Three orgs: acme (1), bravo (2), cyber (3),
each with single-role accounts <org>.pub, <org>.sol, <org>.con; acme publishes, bravo buys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.cti import ContractRevert, CtiClient, Role, TaskState, deploy_with
from tests.unit.helpers_cti import (  # noqa: F401  (fixtures)
    TIMEOUT, World, address_for, content_hash, key_for, new_chain, world, world_once,
)

H = content_hash("cti")
PRICE = 1000


# ---- set-ups: each returns the context the call needs --------------------------------------

def listed(w: World) -> dict[str, Any]:
    tok = w.client("acme.pub").publish("uuid-1", "title", H, PRICE, 10, [address_for("acme.sol")]).result
    return {"token": tok}


def sold(w: World) -> dict[str, Any]:
    ctx = listed(w)
    w.client("bravo.con").buy(ctx["token"], 2)
    return ctx


def pending(w: World) -> dict[str, Any]:
    ctx = sold(w)
    ctx["task"] = w.client("bravo.con").request(ctx["token"], b"\x02" * 33).result
    return ctx


def accepted(w: World) -> dict[str, Any]:
    ctx = pending(w)
    w.client("acme.sol").accept(ctx["task"])
    return ctx


def overdue(w: World) -> dict[str, Any]:
    ctx = accepted(w)
    w.chain.advance(TIMEOUT + 1)
    return ctx


def finished(w: World) -> dict[str, Any]:
    ctx = accepted(w)
    w.client("acme.sol").finish(ctx["task"], content_hash("result"), "https://x")
    return ctx


def proposed(w: World) -> dict[str, Any]:
    prop = w.client("acme.pub").propose_admission("newco", [address_for("newcomer")], [int(Role.ALL)]).result
    return {"proposal": prop}


def nothing(w: World) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Case:
    function: str
    setup: Callable[[World], dict]
    call: Callable[[CtiClient, dict], Any]
    callers: dict[str, tuple[str, str | None]]  # column -> (account label, expected error or None)
    check: Callable[[CtiClient, dict], bool]


def publisher_only(err_other="WrongOrg"):
    return {"outsider": ("outsider", "NotMember"), "no_role": ("acme.con", "MissingRole"),
            "wrong_org": ("bravo.pub", err_other), "right": ("acme.pub", None)}


def solver_of_acme():
    return {"outsider": ("outsider", "NotMember"), "no_role": ("acme.pub", "MissingRole"),
            "wrong_org": ("bravo.sol", "WrongOrg"), "right": ("acme.sol", None)}


def task_consumer():
    return {"outsider": ("outsider", "NotMember"), "no_role": ("bravo.pub", "MissingRole"),
            "wrong_org": ("cyber.con", "NotTaskConsumer"), "right": ("bravo.con", None)}


def contract_only(error):
    return {"outsider": ("outsider", error), "right": ("acme.pub", error)}


CASES = [
    Case("Membership.proposeAdmission", nothing,
         lambda c, x: c.propose_admission("newco", [address_for("newcomer")], [7]),
         {"outsider": ("outsider", "NotMember"), "right": ("acme.con", None)},
         lambda c, x: c.proposal(1)["status"] == 1 and c.proposal(1)["yes"] == [1]),
    Case("Membership.proposeRemoval", nothing, lambda c, x: c.propose_removal(3),
         {"outsider": ("outsider", "NotMember"), "right": ("bravo.sol", None)},
         lambda c, x: c.proposal(1)["status"] == 1 and c.org_of(address_for("cyber.pub"))[0] == 3),
    Case("Membership.vote", proposed, lambda c, x: c.vote(x["proposal"], True),
         {"outsider": ("outsider", "NotMember"), "wrong_org": ("acme.sol", "AlreadyVoted"),
          "right": ("bravo.con", None)},
         lambda c, x: c.org_of(address_for("newcomer")) == (4, Role.ALL)),
    Case("CtiMarket.publish", nothing,
         lambda c, x: c.publish("uuid-9", "t", H, PRICE, 5, [address_for("acme.sol")]),
         {"outsider": ("outsider", "NotMember"), "no_role": ("acme.con", "MissingRole"),
          "right": ("acme.pub", None)},
         lambda c, x: c.listing_count() == 1 and c.inventory(1) == 5 and c.listing(1).org == 1),
    Case("CtiMarket.mint", listed, lambda c, x: c.mint(x["token"], 5), publisher_only(),
         lambda c, x: c.inventory(x["token"]) == 15),
    Case("CtiMarket.modify", listed, lambda c, x: c.modify(x["token"], "new title", 7), publisher_only(),
         lambda c, x: (c.listing(x["token"]).title, c.listing(x["token"]).price) == ("new title", 7)),
    Case("CtiMarket.setSolver", listed, lambda c, x: c.set_solver(x["token"], address_for("acme.sol"), False),
         publisher_only(), lambda c, x: not c.is_solver(x["token"], address_for("acme.sol"))),
    Case("CtiMarket.withdrawListing", sold, lambda c, x: c.withdraw_listing(x["token"]), publisher_only(),
         lambda c, x: c.listing(x["token"]).withdrawn and c.inventory(x["token"]) == 0
         and c.balance(x["token"], address_for("bravo.con")) == 2),
    Case("CtiMarket.buy", listed, lambda c, x: c.buy(x["token"], 1),
         {"outsider": ("outsider", "NotMember"), "no_role": ("bravo.pub", "MissingRole"),
          "wrong_org": ("acme.con", "OwnListing"), "right": ("bravo.con", None)},
         lambda c, x: c.balance(x["token"]) == 1 and c.proceeds(1) == PRICE),
    Case("CtiMarket.withdrawProceeds", sold, lambda c, x: c.withdraw_proceeds(),
         {"outsider": ("outsider", "NotMember"), "no_role": ("acme.con", "MissingRole"),
          "wrong_org": ("cyber.pub", "NothingToWithdraw"), "right": ("acme.pub", None)},
         lambda c, x: c.proceeds(1) == 0 and c.w3.eth.get_balance(c.deployment.address("CtiMarket")) == 0),
    Case("CtiMarket.escrow", sold, lambda c, x: c._send("CtiMarket", "escrow", address_for("bravo.con"), 1),
         contract_only("OnlyTasks"), lambda c, x: False),
    Case("CtiMarket.release", pending, lambda c, x: c._send("CtiMarket", "release", address_for("acme.pub"), 1),
         contract_only("OnlyTasks"), lambda c, x: False),
    Case("Activity.record", nothing,
         lambda c, x: c._send("Activity", "record", 0, 1, 1, 0, c.address, 1),
         contract_only("NotRecorder"), lambda c, x: False),
    Case("Activity.record2", nothing,
         lambda c, x: c._send("Activity", "record2", 2, 1, 5, 3, 2, 5, 1, 0, c.address),
         contract_only("NotRecorder"), lambda c, x: False),
    Case("Tasks.request", sold, lambda c, x: c.request(x["token"], b"\x02" * 33),
         {"outsider": ("outsider", "NotMember"), "no_role": ("bravo.pub", "MissingRole"),
          "wrong_org": ("cyber.con", "NoToken"), "right": ("bravo.con", None)},
         lambda c, x: c.task(1).state is TaskState.PENDING and c.balance(x["token"]) == 1),
    Case("Tasks.buyAndRequest", listed, lambda c, x: c.buy_and_request(x["token"], b"\x02" * 33),
         {"outsider": ("outsider", "NotMember"), "no_role": ("bravo.pub", "MissingRole"),
          "wrong_org": ("acme.con", "OwnListing"), "right": ("bravo.con", None)},
         lambda c, x: c.task(1).state is TaskState.PENDING and c.task(1).consumer == c.address
         and c.balance(x["token"]) == 0 and c.inventory(x["token"]) == 9 and c.proceeds(1) == PRICE
         and (c.activity(2)["bought"], c.activity(2)["requested"], c.activity(1)["sold"]) == (1, 1, 1)),
    Case("CtiMarket.sellIntoEscrow", listed,
         lambda c, x: c._send("CtiMarket", "sellIntoEscrow", c.address, 2, x["token"], value=PRICE),
         contract_only("OnlyTasks"), lambda c, x: False),
    Case("Activity.record3", nothing,
         lambda c, x: c._send("Activity", "record3", 5, 1, 6, 1, 7, 2, 1, 0, c.address),
         contract_only("NotRecorder"), lambda c, x: False),
    Case("Tasks.deliver", pending, lambda c, x: c.deliver(x["task"], content_hash("r"), "u"), solver_of_acme(),
         lambda c, x: c.task(x["task"]).state is TaskState.FINISHED and c.task(x["task"]).solver == c.address
         and c.task(x["task"]).result_hash == content_hash("r") and c.task(x["task"]).result_uri == "u"
         and (c.activity(1)["accepted"], c.activity(1)["solved"], c.activity(2)["consumed"]) == (1, 1, 1)),
    Case("Tasks.accept", pending, lambda c, x: c.accept(x["task"]), solver_of_acme(),
         lambda c, x: c.task(x["task"]).state is TaskState.ACCEPTED and c.task(x["task"]).solver == c.address),
    Case("Tasks.finish", accepted, lambda c, x: c.finish(x["task"], content_hash("r"), "u"), solver_of_acme(),
         lambda c, x: c.task(x["task"]).state is TaskState.FINISHED
         and c.balance(x["token"], c.deployment.address("Tasks")) == 0),
    Case("Tasks.reject", pending, lambda c, x: c.reject(x["task"], "no such MISP event"), solver_of_acme(),
         lambda c, x: c.task(x["task"]).state is TaskState.REJECTED
         and c.balance(x["token"], address_for("bravo.con")) == 2),
    Case("Tasks.cancel", pending, lambda c, x: c.cancel(x["task"]), task_consumer(),
         lambda c, x: c.task(x["task"]).state is TaskState.CANCELLED and c.balance(x["token"]) == 2),
    Case("Tasks.expire", overdue, lambda c, x: c.expire(x["task"]), task_consumer(),
         lambda c, x: c.task(x["task"]).state is TaskState.EXPIRED and c.balance(x["token"]) == 2),
    Case("Feedback.rate", finished, lambda c, x: c.rate(x["task"], 4, "useful"), task_consumer(),
         lambda c, x: c.rating(x["token"]) == (4, 1)),
    Case("Feedback.dispute", finished, lambda c, x: c.dispute(x["task"], content_hash("other"), "not what was listed"),
         task_consumer(), lambda c, x: c.dispute_of(x["task"]) == content_hash("other")
         and c.activity(1)["dispute_received"] == 1),
    Case("Feedback.like", listed, lambda c, x: c.like(x["token"]),
         {"outsider": ("outsider", "NotMember"), "no_role": ("bravo.pub", "MissingRole"),
          "wrong_org": ("acme.con", "OwnListing"), "right": ("bravo.con", None)},
         lambda c, x: c.likes(x["token"]) == 1 and c.activity(1)["like_received"] == 1),
]

MATRIX = [pytest.param(case, column, id=f"{case.function}-{column}")
          for case in CASES for column in case.callers]


def test_every_state_changing_function_is_in_the_matrix():
    from testbed.cti.artifacts import load_all
    mutating = {f"{name}.{item['name']}" for name, a in load_all().items() for item in a.abi
                if item["type"] == "function" and item["stateMutability"] in ("nonpayable", "payable")}
    # ERC-1155 transfers and approvals are the standard's own (holder-only) functions.
    erc1155 = {"CtiMarket.safeTransferFrom", "CtiMarket.safeBatchTransferFrom", "CtiMarket.setApprovalForAll"}
    assert mutating - erc1155 == {c.function for c in CASES}


@pytest.mark.parametrize(("case", "column"), MATRIX)
def test_role_matrix(world, case: Case, column: str):
    ctx = case.setup(world)
    label, expected = case.callers[column]
    client = world.client(label)
    if expected is None:
        sent = case.call(client, ctx)
        assert sent.gas_used > 21000
        assert case.check(client, ctx), f"{case.function} by {label} did not have its effect"
        return
    with pytest.raises(ContractRevert) as err:
        case.call(client, ctx)
    assert err.value.error == expected, str(err.value)
    assert err.value.operation == case.function
    assert err.value.reason and "0x" + "00" * 4 not in err.value.reason


def test_only_authorized_solvers_of_the_listing_may_work_on_it(world):
    ctx = pending(world)
    world.client("acme.pub").set_solver(ctx["token"], address_for("acme.sol"), False)
    with pytest.raises(ContractRevert) as err:
        world.client("acme.sol").accept(ctx["task"])
    assert err.value.error == "NotAuthorizedSolver"
    with pytest.raises(ContractRevert) as err:
        world.client("acme.pub").set_solver(ctx["token"], address_for("bravo.sol"), True)
    assert err.value.error == "NotASolverOfOrg"  # only the publisher org's own solvers


def test_finish_only_by_the_solver_that_accepted():
    chain = new_chain()
    chain.fund([address_for(x) for x in ("s1", "s2", "pub", "con", "operator")])
    dep = deploy_with(chain.w3, chain.w3.eth.chain_id, key_for("operator"),
                      {"acme": [address_for("pub"), address_for("s1"), address_for("s2")],
                       "bravo": [address_for("con")]})
    pub, s1, s2, con = (CtiClient(chain.w3, dep, key_for(x)) for x in ("pub", "s1", "s2", "con"))
    tok = pub.publish("u", "t", H, PRICE, 3, [s1.address, s2.address]).result
    con.buy(tok)
    task = con.request(tok, b"k").result
    s1.accept(task)
    for call in (lambda: s2.finish(task, H, "u"), lambda: s2.reject(task, "mine now")):
        with pytest.raises(ContractRevert) as err:
            call()
        assert err.value.error == "NotTaskSolver"
    s1.finish(task, H, "u")
    assert con.task(task).state is TaskState.FINISHED


def test_a_finished_task_cannot_change_again(world):
    ctx = accepted(world)
    world.client("acme.sol").finish(ctx["task"], content_hash("r"), "u")
    for label, call in (("acme.sol", lambda c: c.finish(ctx["task"], content_hash("r"), "u")),
                        ("acme.sol", lambda c: c.reject(ctx["task"], "late")),
                        ("bravo.con", lambda c: c.cancel(ctx["task"])),
                        ("bravo.con", lambda c: c.expire(ctx["task"]))):
        with pytest.raises(ContractRevert) as err:
            call(world.client(label))
        assert err.value.error == "BadState" and "finished" in str(err.value)
    with pytest.raises(ContractRevert) as err:
        world.client("bravo.con").rate(ctx["task"], 6)
    assert err.value.error == "BadRating"
    world.client("bravo.con").rate(ctx["task"], 5)
    with pytest.raises(ContractRevert) as err:
        world.client("bravo.con").rate(ctx["task"], 5)
    assert err.value.error == "AlreadyRated"


def test_like_once_per_org(world):
    ctx = listed(world)
    world.client("bravo.con").like(ctx["token"])
    with pytest.raises(ContractRevert) as err:
        world.client("bravo.con").like(ctx["token"])
    assert err.value.error == "AlreadyLiked" and "already liked" in str(err.value)
    world.client("cyber.con").like(ctx["token"])
    assert world.client("acme.pub").likes(ctx["token"]) == 2
