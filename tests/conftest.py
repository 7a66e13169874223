"""Suite-wide: in CI (`TESTBED_CI_STRICT=1`, set by .ci/run, which installs every prerequisite the
tests look for), a skipped test or module is a failure, except where the prerequisite is one no
registry here serves: a Docker engine. A skip on a developer's machine stays a skip, with its reason."""

from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("TESTBED_CI_STRICT") == "1"
SKIPS_CI_ACCEPTS = ("no Docker engine answers here",)


def _accepted(reason: str) -> bool:
    return any(allowed in reason for allowed in SKIPS_CI_ACCEPTS)


def _in_ci_it_fails(report) -> None:
    if STRICT and report.skipped and not _accepted(str(report.longrepr)):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which installs this test's prerequisites itself: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _in_ci_it_fails(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _in_ci_it_fails(outcome.get_result())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The order the modules ran in is random (tox.ini); a failed run says how to replay it."""
    if exitstatus != 0 and config.pluginmanager.hasplugin("random_order"):
        from random_order.config import Config

        order = Config(config)
        if order.is_enabled:
            terminalreporter.write_line(f"test order: replay with --random-order-bucket={order.bucket_type} "
                                        f"--random-order-seed={order.seed}")
