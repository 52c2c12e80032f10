"""Put a run's benchmark scores beside the paper's Table 1, per benchmark and iteration.

    python reproduce/compare_paper.py runs/<name> [--paper-model qwen2.5-vl-3b] [--judge rule]

The scores come from the run log's ``eval_scores`` table (written by ``visplay eval runs/<name> --iteration N``);
the paper's numbers from reproduce/paper_table1.json. Our average is the mean over the Table 1 benchmarks we have;
the paper's printed average is shown beside the mean of its own seven scores, which differ in most rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visplay.report.build import collect
from visplay.report.paper import (
    check_printed_averages,
    compare,
    format_comparison,
    load_table1,
    paper_model_for,
    scores_by_iteration,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory or its run.db")
    parser.add_argument("--paper-model", help="paper row family (default: from the run's recipe model.path)")
    parser.add_argument("--judge", help="which judge's scores (default: rule if present)")
    args = parser.parse_args(argv)
    path = Path(args.run)
    data = collect(path / "run.db" if path.is_dir() else path)
    table = load_table1()
    model = args.paper_model or paper_model_for(data.recipe)
    ours = scores_by_iteration(data.eval_scores, args.judge)
    if not ours:
        print(f"{args.run}: no eval_scores with iterations; run `visplay eval {args.run} --iteration N ...` first",
              file=sys.stderr)
    print(format_comparison(table, model, compare(table, model, ours)))
    for note in check_printed_averages(table):
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
