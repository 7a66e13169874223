"""Incident scenarios: the scenario engine, its steps and assertions, and the agreement monitor.

Public API (nothing runs at import time):
    load_scenario(path) -> Scenario               validation only (testbed.scenario.resolve)
    run_scenario(path, ...) -> ScenarioResult      network up, steps, faults, monitor, verdict
    AgreementMonitor                               samples every live node beside any run
"""
