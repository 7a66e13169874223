"""What `testbed run` needs besides the engine: collecting files, the verdict table, JUnit XML."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from testbed import shipped
from testbed.errors import SpecError
from testbed.scenario.resolve import Scenario, load_scenario


def collect(paths: list[Path]) -> list[Path]:
    """Files as given; a directory contributes its *.yaml / *.yml files (not subdirectories), sorted."""
    files: list[Path] = []
    for path in (shipped.resolve(p, "scenario") for p in paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise SpecError(f"{path}: no scenario files (*.yaml) in this directory")
            files += found
        else:
            files.append(path)
    return files


def validate_all(files: list[Path], overrides: dict | None) -> list[Scenario]:
    return [load_scenario(f, network_overrides=overrides) for f in files]


def render_verdicts(console, results) -> None:
    from rich.table import Table

    table = Table(title="scenario verdicts")
    for column in ("scenario", "check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        if result.error:
            table.add_row(result.name, "run", "[red]ERROR[/red]", result.error)
        for a in result.assertions:
            table.add_row(result.name, a.name, "[green]pass[/green]" if a.passed else "[red]FAIL[/red]", a.detail)
    console.print(table)
    for result in results:
        colour = "green" if result.passed else "red"
        console.print(f"[{colour}]{result.status.upper():6}[/{colour}] {result.name}  {result.seconds:.0f}s  {result.run_dir}")


def junit_xml(results) -> ET.Element:
    suites = ET.Element("testsuites")
    for result in results:
        cases = result.assertions or []
        suite = ET.SubElement(suites, "testsuite", name=result.name, tests=str(max(1, len(cases))),
                              failures=str(sum(not a.passed for a in cases)), errors=str(int(bool(result.error))),
                              time=f"{result.seconds:.2f}")
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="run_dir", value=str(result.run_dir))
        if result.error:
            case = ET.SubElement(suite, "testcase", classname=result.name, name="run")
            ET.SubElement(case, "error", message=result.error[:500]).text = result.error
        for a in cases:
            case = ET.SubElement(suite, "testcase", classname=result.name, name=a.name)
            if not a.passed:
                ET.SubElement(case, "failure", message=a.detail[:500]).text = "\n".join(
                    [a.detail] + [str(e) for e in a.evidence[:10]])
    return suites


def write_junit(path: Path, results) -> None:
    tree = ET.ElementTree(junit_xml(results))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
