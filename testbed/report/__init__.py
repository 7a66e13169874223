"""Reports rendered from a run directory alone: a JSON summary and one self-contained HTML page.

    from testbed.report import render
    html_path, json_path = render(run_dir)

Pure with respect to the network: nothing here talks to a node. matplotlib is imported
only when plots are drawn (Agg backend).
"""

from testbed.report.render import render

__all__ = ["render"]
