"""The scenario file: which network, which steps (in order, at times, in parallel), which assertions.

One schema in one place; `testbed.scenario.resolve` adds the checks that need the network
spec (node and organization names, backend abilities, aliases defined before use).

    name: phishing-campaign
    network: networks/four-orgs.yaml        # a path (relative to this file) or an inline spec
    steps:
      - publish: {org: acme-cert, as: c2-domains}
      - parallel:
          - buy: {org: beta-bank, cti: c2-domains}
          - [ {wait: 2s}, {crash: {node: gamma-v1}} ]
      - at: 30s
        heal: {}
    assertions:
      - agreement: {max_reorg_depth: 1}
      - liveness: {min_blocks_per_min: 40}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from testbed.spec.network import NAME_PATTERN, NetworkSpec, check_account_count

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_SECONDS = 24 * 3600


def parse_duration(value: Any) -> float:
    """'30s', '500ms', '2m', 1.5 -> seconds. Plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 500ms or 2m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}; expected a number of seconds or a string like 30s, 500ms, 2m")
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"duration {value!r} is out of range (0 .. {MAX_SECONDS}s)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
              {"type": "string", "pattern": _DURATION.pattern}],
    "description": "seconds, or a string like 30s, 500ms, 2m, 1h"})]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Alias = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]


class Strict(BaseModel):
    # strict: no coercion of "21000", "yes", 4.0 or true into numbers and booleans (durations keep
    # their own parser: 30s, 500ms, 2m or plain seconds)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


# ---- CTI actions -----------------------------------------------------------------------------
class Publish(Strict):
    org: Name = Field(description="Publishing organization (its first account signs).")
    alias: Alias = Field(alias="as", description="Name later steps use for this CTI.")
    title: str | None = Field(None, max_length=200,
                              description="Listing title (default: the event's info, else 'indicators').")
    event: str | None = Field(None, max_length=4096, description=(
        "A MISP event JSON file (relative to the scenario file): attributes and MISP objects, checked with pymisp, "
        "put in the publisher's intelligence store and listed. Without it the publisher's Solver gets a generated "
        "sample event."))
    price_wei: int = Field(0, ge=0, le=10**24)
    supply: int = Field(10, ge=1, le=10**6)


class Buy(Strict):
    org: Name
    cti: Alias = Field(description="Alias given by a publish step.")
    amount: int = Field(1, ge=1, le=10**6)


class Request(Strict):
    org: Name = Field(description="Consumer organization: spends one token to open a task.")
    cti: Alias
    alias: Alias = Field(alias="as", description="Name later steps use for this task.")


class AwaitDelivery(Strict):
    tasks: list[Alias] = Field(min_length=1, description="Task aliases that must reach Finished.")
    timeout: Duration = Field(60.0, gt=0)


class Feedback(Strict):
    task: Alias
    rating: int = Field(5, ge=1, le=5)
    comment: str = Field("", max_length=200)


class SolverAction(Strict):
    org: Name
    action: Literal["start", "stop"]


# ---- membership: onboarding and offboarding on the running network -------------------------------
class Join(Strict):
    """A new organization joins (testbed.membership.join): nodes started, funded, voted in as
    validators by the current ones and admitted to the CTI contracts when they are deployed."""
    org: Name = Field(description="The newcomer; a new name (not a founding or a departed organization).")
    validators: int = Field(1, ge=0, le=8, description="Validator nodes of the newcomer.")
    members: int = Field(0, ge=0, le=8, description="Non-validating member nodes of the newcomer.")
    accounts: int = Field(8, le=1000, description="Accounts generated and funded for the newcomer (at least one per "
                          "signing purpose plus one for load; see the network spec).")

    @field_validator("accounts")
    @classmethod
    def _enough_accounts(cls, n: int) -> int:
        return check_account_count(n)
    solver: bool = Field(False, description="Start the newcomer's Solver after it joined (delivers CTIs it publishes).")
    timeout: Duration = Field(120.0, gt=0, description="Per wait (node ready, each validator vote).")

    @model_validator(mode="after")
    def _some_node(self) -> "Join":
        if self.validators + self.members < 1:
            raise ValueError("a joining organization needs at least one node (validators or members)")
        return self


class Leave(Strict):
    """An organization leaves (testbed.membership.leave): removed from the CTI contracts, voted out
    of the validators, its nodes (and its Solver) stopped; its state is kept for audit."""
    org: Name
    timeout: Duration = Field(120.0, gt=0)


# ---- load, waits, faults -----------------------------------------------------------------------
class Load(Strict):
    rate: float = Field(gt=0, le=5000, description="Offered signed transfers per second, all orgs together.")
    duration: Duration = Field(gt=0)
    orgs: list[Name] | None = Field(None, description="Sending organizations (default: all).")
    engine: Literal["transfers", "locust"] = Field("transfers", description="transfers: a plain rate of client-signed "
                                                   "transfers; locust: the Locust load layer, where installed.")
    drain: Duration = Field(30.0, ge=0, description="Seconds to wait for inclusion after the last send.")
    workers: int = Field(0, ge=0, le=32, description="engine: locust only. 0: the users run in the load process; "
                         "N: a Locust master and N workers, their records merged into one run.")
    worker_hosts: Literal["local", "ansible"] = Field("local", description="local: worker processes on this "
                                                      "machine; ansible: on the member hosts (ansible backend).")

    @model_validator(mode="after")
    def _workers_need_locust(self) -> "Load":
        if self.workers and self.engine != "locust":
            raise ValueError("workers are Locust workers: set 'engine: locust' or drop 'workers'")
        return self


class WaitBlocks(Strict):
    blocks: int = Field(ge=1, le=100_000)
    timeout: Duration = Field(120.0, gt=0)


class NodeFault(Strict):
    node: str = Field(description="Node name, e.g. beta-bank-v1.")
    hold: Duration | None = Field(None, alias="for", description="Heal automatically after this long.")


class Partition(Strict):
    groups: list[list[Name]] = Field(min_length=2, description="Groups of organizations that cannot reach each other.")
    hold: Duration | None = Field(None, alias="for")


class Delay(Strict):
    org: Name
    ms: int = Field(ge=0, le=60_000)
    jitter_ms: int = Field(0, ge=0, le=60_000)
    loss_pct: float = Field(0.0, ge=0, le=100)
    hold: Duration | None = Field(None, alias="for")


class Heal(Strict):
    """Heal network faults (partition, delay) and resume paused nodes; crashed nodes need restart."""


def _branches(value: Any) -> Any:
    """A parallel branch is a step or a list of steps; a lone step becomes a one-step branch."""
    if isinstance(value, list):
        return [[item] if isinstance(item, dict) else item for item in value]
    return value


ACTIONS = ("publish", "buy", "request", "await_delivery", "feedback", "solver", "join", "leave", "load", "wait", "crash",
           "pause", "resume", "restart", "partition", "delay", "heal", "parallel")
FAULTS = ("crash", "pause", "partition", "delay")


class Step(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")] | None = Field(
        None, description="Names the step (assertion windows refer to it).")
    at: Duration | None = Field(None, description="Start no earlier than this long after the scenario started.")
    publish: Publish | None = None
    buy: Buy | None = None
    request: Request | None = None
    await_delivery: AwaitDelivery | None = None
    feedback: Feedback | None = None
    solver: SolverAction | None = None
    join: Join | None = None
    leave: Leave | None = None
    load: Load | None = None
    wait: Union[Duration, WaitBlocks, None] = None
    crash: NodeFault | None = None
    pause: NodeFault | None = None
    resume: NodeFault | None = None
    restart: NodeFault | None = None
    partition: Partition | None = None
    delay: Delay | None = None
    heal: Heal | None = None
    parallel: Annotated[list[list["Step"]], BeforeValidator(_branches)] | None = Field(
        None, min_length=1, description="Branches run at the same time; a branch is a step or a list of steps.")

    @model_validator(mode="after")
    def _one_action(self) -> "Step":
        chosen = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(chosen) != 1:
            what = "no action" if not chosen else f"several actions ({', '.join(chosen)})"
            raise ValueError(f"a step takes exactly one action, found {what}; actions: {', '.join(ACTIONS)}")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    @property
    def body(self) -> Any:
        return getattr(self, self.action)

    def label(self) -> str:
        return self.name or self.action


# ---- assertions ----------------------------------------------------------------------------------
class Window(Strict):
    start: Duration | None = Field(None, alias="from", description="Window start, after the scenario started.")
    end: Duration | None = Field(None, alias="to")
    during: str | None = Field(None, description="The period of a named step.")
    skip: Duration = Field(0.0, description="Seconds cut from the window's start (e.g. blocks in flight).")


class AgreementAssert(Strict):
    max_reorg_depth: int | None = Field(None, ge=0, description="Deepest reorg any node may show (default: what is "
                                        "normal for the network's engine: 0 on QBFT/IBFT, 2 on Clique).")
    same_state: bool = Field(True, description="Activity counters and task states equal on every node at one block.")
    same_validators: bool = Field(True)


class LivenessAssert(Window):
    min_blocks_per_min: float | None = Field(None, ge=0)
    must_stall: bool = Field(False, description="The chain must stop growing in the window.")
    max_blocks: int = Field(0, ge=0, description="With must_stall: most blocks any node may add in the window.")

    @model_validator(mode="after")
    def _one_kind(self) -> "LivenessAssert":
        if (self.min_blocks_per_min is None) == (not self.must_stall):
            raise ValueError("liveness takes either min_blocks_per_min or must_stall: true")
        return self


class LostTxAssert(Strict):
    pass


class LostTaskAssert(Strict):
    finished: bool = Field(True, description="Every requested task must also reach Finished.")


class Assertion(Strict):
    name: str | None = None
    agreement: AgreementAssert | None = None
    liveness: LivenessAssert | None = None
    no_lost_transactions: LostTxAssert | None = None
    no_lost_tasks: LostTaskAssert | None = None
    min_tps: float | None = Field(None, gt=0)
    max_p95_latency: Duration | None = Field(None, gt=0)

    KINDS: ClassVar[tuple[str, ...]] = ("agreement", "liveness", "no_lost_transactions", "no_lost_tasks", "min_tps",
                              "max_p95_latency")

    @model_validator(mode="after")
    def _one_kind(self) -> "Assertion":
        chosen = [k for k in self.KINDS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"an assertion takes exactly one kind, found {len(chosen)}; kinds: {', '.join(self.KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in self.KINDS if getattr(self, k) is not None)

    def label(self) -> str:
        return self.name or self.kind.replace("_", " ")


ResourceSource = Literal["auto", "psutil", "prometheus", "none"]  # testbed.monitoring.resources.resolve
RESOURCE_SOURCES: tuple[str, ...] = get_args(ResourceSource)


class MonitorSettings(Strict):
    interval: Duration = Field(0.5, gt=0, le=60)
    stall_after: Duration = Field(5.0, gt=0, description="No new block for this long counts as a stall.")
    recheck: int = Field(12, ge=1, le=1024, description="Heights below the head re-read each sample (reorgs).")
    watchdog: bool = Field(True, description="Rewind a Clique chain stuck on equal-weight branches while no fault "
                           "is active (recorded; the agreement verdict names it). false: leave the stall to be seen.")
    resources: ResourceSource = Field(
        "auto", description="Where the per-node CPU, memory, disk and network series come from. psutil: the node "
        "processes of this machine; prometheus: the nodes' own metrics, scraped by the network's Prometheus ("
        "'testbed monitor up', else one started for the run), wherever the nodes run; auto: psutil when the nodes "
        "are processes of this machine, else prometheus when it is installed; none: no resource series. "
        "'monitor: prometheus' is short for "
        "'monitor: {resources: prometheus}'.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in RESOURCE_SOURCES:
                raise ValueError(f"{value!r}: give prometheus, psutil, auto or none, or a mapping (interval, resources, ...)")
            return {"resources": value}
        return value


class ScenarioSpec(Strict):
    name: Name
    description: str = ""
    network: Union[str, NetworkSpec] = Field(description="Network spec path (relative to this file) or inline spec.")
    deploy: bool | None = Field(None, description="Deploy the CTI contracts (default: when a CTI step exists).")
    settle: Duration = Field(3.0, ge=0, description="Seconds after the last step before the final samples.")
    timeout: Duration = Field(600.0, gt=0, description="The whole run fails past this.")
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    steps: list[Step] = Field(min_length=1)
    assertions: list[Assertion] = Field(default_factory=list)


Step.model_rebuild()


def json_schema() -> dict:
    schema = ScenarioSpec.model_json_schema()
    # a parallel branch is a step or a list of steps (see _branches): say so to editors too
    step = {"$ref": "#/$defs/Step"}
    for option in schema["$defs"]["Step"]["properties"]["parallel"]["anyOf"]:
        if option.get("type") == "array":
            option["items"] = {"anyOf": [step, {"type": "array", "items": step}]}
    # `monitor: prometheus` is short for {resources: prometheus} (MonitorSettings._shorthand)
    monitor = schema["properties"]["monitor"]
    schema["properties"]["monitor"] = {"anyOf": [{"$ref": "#/$defs/MonitorSettings"},
                                                 {"enum": list(RESOURCE_SOURCES)}],
                                       **{k: v for k, v in monitor.items() if k != "$ref"}}
    return schema
