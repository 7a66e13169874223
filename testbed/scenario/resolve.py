"""Scenario file -> a validated Scenario: schema first, then every check that needs the network.

Validation only: nothing is started, so a malformed file always ends in one SpecError
naming file:line, the key path and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import shipped
from testbed.cti.misp import MispEventError, parse_event
from testbed.errors import SpecError
from testbed.network_plan import node_names
from testbed.spec.loader import load_model, parse_yaml_text, validate_text, read_text_file
from testbed.spec.network import NetworkSpec
from testbed.spec.scenario import ScenarioSpec, Step

CTI_ACTIONS = ("publish", "buy", "request", "await_delivery", "feedback", "solver")
NETWORK_FAULTS = ("partition", "delay")
BACKENDS_WITHOUT_LINK_FAULTS = ("local",)


@dataclass(frozen=True)
class Scenario:
    spec: ScenarioSpec
    network: NetworkSpec
    source: str
    network_source: str
    step_names: tuple[str, ...] = ()
    uses_cti: bool = False
    event_files: dict[str, str] = field(default_factory=dict)  # publish alias -> its MISP event file (absolute)
    lines: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def deploy(self) -> bool:
        return self.spec.deploy if self.spec.deploy is not None else self.uses_cti

    def resolved(self) -> dict:
        """What the run directory records: the scenario with its network spec inlined."""
        data = self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["network"] = self.network.model_dump(mode="json")
        return {"source": self.source, "network_source": self.network_source, "scenario": data}


def load_scenario(path: Path | str, *, network_overrides: dict[str, Any] | None = None) -> Scenario:
    path = Path(path)
    text = read_text_file(path, hint="give a scenario YAML file, a directory of them, or a shipped scenario's name "
                                          f"({', '.join(p.stem for p in shipped.scenario_files())})")
    return scenario_from_text(text, str(path), base_dir=path.parent, network_overrides=network_overrides)


def scenario_from_text(text: str, source: str, *, base_dir: Path, network_overrides: dict[str, Any] | None = None) -> Scenario:
    spec = validate_text(text, source, ScenarioSpec)
    _, lines = parse_yaml_text(text, source)
    if isinstance(spec.network, str):
        net_path = Path(spec.network)
        if not net_path.is_absolute():
            net_path = base_dir / net_path
        if not net_path.is_file():
            raise SpecError(f"{source}:{lines.get(('network',), 1)}: network: no network spec at {net_path}",
                            hint="give a path relative to the scenario file, or an inline network mapping")
        network = load_model(net_path, NetworkSpec)
        network_source = str(net_path)
    else:
        network, network_source = spec.network, f"{source} (inline)"
    if network_overrides:
        network = apply_overrides(network, network_overrides)
    checker = _Checker(spec, network, source, lines, base_dir)
    checker.check()
    return Scenario(spec=spec, network=network, source=source, network_source=network_source,
                    step_names=tuple(checker.names), uses_cti=checker.uses_cti, event_files=checker.event_files,
                    lines=lines)


def apply_overrides(network: NetworkSpec, overrides: dict[str, Any]) -> NetworkSpec:
    """name=..., port_base=..., or any top-level field of the network spec."""
    data = network.model_dump()
    for key, value in overrides.items():
        if key == "port_base":
            data["ports"]["base"] = value
        else:
            data[key] = value
    try:
        return NetworkSpec.model_validate(data)
    except ValueError as exc:
        raise SpecError(f"network overrides {overrides}: {str(exc).splitlines()[0]}") from None


class _Checker:
    def __init__(self, spec: ScenarioSpec, network: NetworkSpec, source: str, lines: dict, base_dir: Path) -> None:
        self.spec, self.network, self.source, self.lines, self.base_dir = spec, network, source, lines, base_dir
        self.event_files: dict[str, str] = {}
        self.orgs = [o.name for o in network.organizations]
        self.nodes = [n for names in node_names(network).values() for n in names]
        self.grown = network  # the spec with every organization that joined so far (departed ones stay in it)
        self.departed: list[str] = []
        self.ctis: set[str] = set()
        self.tasks: set[str] = set()
        self.task_orgs: dict[str, str] = {}
        self.in_parallel = 0
        self.names: list[str] = []
        self.uses_cti = False

    def fail(self, loc: tuple, message: str, hint: str | None = None) -> None:
        probe = loc
        while probe and probe not in self.lines:
            probe = probe[:-1]
        key = ".".join(str(p) for p in loc)
        raise SpecError(f"{self.source}:{self.lines.get(probe, 1)}: {key}: {message}", hint=hint)

    def event_file(self, given: str, loc: tuple) -> str:
        """The MISP event file a publish step names, read and checked now (before anything starts)."""
        path = Path(given) if Path(given).is_absolute() else self.base_dir / given
        try:
            parse_event(path.read_bytes())
        except OSError as exc:
            self.fail(loc, f"cannot read {path}: {exc.strerror or exc}", hint="give a MISP event JSON file, "
                      "relative to the scenario file")
        except MispEventError as exc:
            self.fail(loc, f"{path}: {exc}", hint="export the event from MISP as JSON (Event with Attribute/Object)")
        return str(path.resolve())

    def check(self) -> None:
        self.steps(self.spec.steps, ("steps",))
        if self.uses_cti and self.spec.deploy is False:
            self.fail(("deploy",), "CTI steps need the contracts; remove 'deploy: false'")
        for i, assertion in enumerate(self.spec.assertions):
            live = assertion.liveness
            if live and live.during and live.during not in self.names:
                self.fail(("assertions", i, "liveness", "during"), f"no step is named {live.during!r}",
                          hint=f"named steps: {', '.join(self.names) or 'none (give a step a name: ...)'}")
            if live and live.start is not None and live.end is not None and live.end <= live.start:
                self.fail(("assertions", i, "liveness", "to"), "the window ends before it starts")

    def steps(self, steps: list[Step], loc: tuple) -> None:
        for i, step in enumerate(steps):
            self.step(step, loc + (i,))

    def org(self, name: str, loc: tuple) -> None:
        if name not in self.orgs:
            why = " (it left in an earlier step)" if name in self.departed else ""
            self.fail(loc, f"no organization {name!r} in network {self.network.name!r}{why}",
                      hint=f"organizations at this step: {', '.join(self.orgs)}")

    def join(self, body, loc: tuple) -> None:
        if body.org in self.departed:
            self.fail(loc + ("org",), f"organization {body.org!r} left in an earlier step; a departed name cannot rejoin",
                      hint="give the newcomer a new name")
        if body.org in self.orgs:
            self.fail(loc + ("org",), f"organization {body.org!r} is already part of network {self.network.name!r}",
                      hint="join takes a new organization name")
        data = self.grown.model_dump()
        data["organizations"].append({"name": body.org, "validators": body.validators, "members": body.members,
                                      "solver": body.solver, "accounts": body.accounts})
        try:
            grown = NetworkSpec.model_validate(data)
        except ValueError as exc:
            first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc), "loc": ()}
            where = ".".join(map(str, first["loc"][-2:]))
            self.fail(loc, f"network {self.network.name!r} cannot take organization {body.org!r}: "
                      f"{where + ' ' if where else ''}{first['msg']}")
        self.grown = grown
        self.orgs.append(body.org)
        self.nodes += node_names(grown)[body.org]

    def leave(self, body, loc: tuple) -> None:
        self.org(body.org, loc + ("org",))
        if len(self.orgs) == 1:
            self.fail(loc + ("org",), "the last organization cannot leave")
        gone = set(node_names(self.grown)[body.org])
        self.orgs.remove(body.org)
        self.nodes = [n for n in self.nodes if n not in gone]
        self.departed.append(body.org)

    def node(self, name: str, loc: tuple) -> None:
        if name not in self.nodes:
            self.fail(loc, f"no node {name!r} in network {self.network.name!r}", hint=f"nodes: {', '.join(self.nodes)}")

    def step(self, step: Step, loc: tuple) -> None:
        action, body = step.action, step.body
        here = loc + (action,)
        if step.name is not None:
            if step.name in self.names:
                self.fail(loc + ("name",), f"step name {step.name!r} is used twice")
            self.names.append(step.name)
        if action in CTI_ACTIONS:
            self.uses_cti = True
        if action == "parallel":
            before_ctis, before_tasks = set(self.ctis), set(self.tasks)
            defined_c, defined_t = set(), set()
            self.in_parallel += 1
            for b, branch in enumerate(body):
                self.ctis, self.tasks = set(before_ctis), set(before_tasks)  # a branch cannot use a sibling's aliases
                self.steps(branch, here + (b,))
                defined_c |= self.ctis - before_ctis
                defined_t |= self.tasks - before_tasks
            self.in_parallel -= 1
            self.ctis, self.tasks = before_ctis | defined_c, before_tasks | defined_t
        elif action in ("join", "leave"):
            if self.in_parallel:
                self.fail(here, f"{action} changes the network every other step runs on; it cannot run inside parallel",
                          hint=f"make the {action} a step of its own, before or after the parallel block")
            getattr(self, action)(body, here)
        elif action == "publish":
            self.org(body.org, here + ("org",))
            if body.alias in self.ctis:
                self.fail(here + ("as",), f"CTI alias {body.alias!r} is already defined")
            self.ctis.add(body.alias)
            if body.event is not None:
                self.event_files[body.alias] = self.event_file(body.event, here + ("event",))
        elif action in ("buy", "request"):
            self.org(body.org, here + ("org",))
            if body.cti not in self.ctis:
                self.fail(here + ("cti",), f"no CTI {body.cti!r} was published by an earlier step",
                          hint=f"published: {', '.join(sorted(self.ctis)) or 'none'}")
            if action == "request":
                if body.alias in self.tasks:
                    self.fail(here + ("as",), f"task alias {body.alias!r} is already defined")
                self.tasks.add(body.alias)
                self.task_orgs[body.alias] = body.org
        elif action in ("await_delivery", "feedback"):
            for j, task in enumerate(body.tasks if action == "await_delivery" else [body.task]):
                if task not in self.tasks:
                    self.fail(here + (("tasks", j) if action == "await_delivery" else ("task",)),
                              f"no task {task!r} was requested by an earlier step",
                              hint=f"requested: {', '.join(sorted(self.tasks)) or 'none'}")
                if action == "feedback" and self.task_orgs.get(task) in self.departed:
                    self.fail(here + ("task",), f"task {task!r} was requested by {self.task_orgs[task]!r}, which left "
                              "in an earlier step; only its requester rates a task")
        elif action == "solver":
            self.org(body.org, here + ("org",))
        elif action == "load":
            for j, org in enumerate(body.orgs or []):
                self.org(org, here + ("orgs", j))
        elif action in ("crash", "pause", "resume", "restart"):
            self.node(body.node, here + ("node",))
        elif action in NETWORK_FAULTS:
            if self.network.backend in BACKENDS_WITHOUT_LINK_FAULTS:
                self.fail(here, f"{action} needs a backend that controls links; network {self.network.name!r} uses "
                          f"backend {self.network.backend!r}", hint="use 'backend: netns' in the network spec")
            if action == "delay":
                self.org(body.org, here + ("org",))
            else:
                seen: set[str] = set()
                for g, group in enumerate(body.groups):
                    if not group:
                        self.fail(here + ("groups", g), "a partition group needs at least one organization")
                    for j, org in enumerate(group):
                        self.org(org, here + ("groups", g, j))
                        if org in seen:
                            self.fail(here + ("groups", g, j), f"organization {org!r} is in two groups")
                        seen.add(org)
