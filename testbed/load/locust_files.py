"""Locust's own files for a run, as `locust --csv PREFIX --html FILE` writes them: the request
statistics (eth_sendRawTransaction batches and inclusions), their history once a second,
failures and exceptions as CSV, and Locust's HTML report. A bench resets Locust's statistics at
every step: the totals are the last step's, the history covers the whole run."""

from __future__ import annotations

import csv
from pathlib import Path

import gevent
from locust.html import get_html_report
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter


class LocustFiles:
    def __init__(self, env, csv_prefix: str = "", html_file: str = "") -> None:
        self.env, self.csv_prefix, self.html_file = env, csv_prefix, html_file
        self._writer: StatsCSVFileWriter | None = None
        self._greenlet = None

    def start(self) -> None:
        if self.csv_prefix:
            Path(self.csv_prefix).parent.mkdir(parents=True, exist_ok=True)
            self._writer = StatsCSVFileWriter(self.env, PERCENTILES_TO_REPORT, self.csv_prefix)
            self._greenlet = gevent.spawn(self._writer.stats_writer)

    def finish(self) -> list[Path]:
        """Write the final totals and the HTML report; the files written."""
        written: list[Path] = []
        if self._writer is not None:
            gevent.kill(self._greenlet)
            self._writer.close_files()
            for suffix, rows in (("_stats.csv", self._writer.requests_csv), ("_failures.csv", self._writer.failures_csv),
                                 ("_exceptions.csv", self._writer.exceptions_csv)):
                path = Path(self.csv_prefix + suffix)
                with open(path, "w", newline="") as handle:  # the totals as they stand at the end
                    rows(csv.writer(handle))
                written.append(path)
            written.append(Path(self._writer.stats_history_file_name()))
        if self.html_file:
            path = Path(self.html_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(get_html_report(self.env, show_download_link=False), encoding="utf-8")
            written.append(path)
        return written
