"""Unit tests of compare.py's summary (medians over rounds, ratios against the engine).
Standard library only: `python3 -m unittest bench/relays/test_compare.py` from the
repository root (tests/latency.rs runs it)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def row(system, rate, p50, p99, cpu):
    return {"system": system, "intended_rate": rate,
            "latency_us": {"p50": p50, "p99": p99}, "cpu_us_per_update": cpu}


class Summary(unittest.TestCase):
    def test_median_of_odd_and_even_counts_skips_missing_values(self):
        self.assertEqual(compare.median([5, 1, 3]), 3)
        self.assertEqual(compare.median([4, 1, 3, 2]), 2.5)
        self.assertEqual(compare.median([None, 7, None]), 7)
        self.assertIsNone(compare.median([]))
        self.assertIsNone(compare.median([None]))

    def test_medians_per_rate_and_system_and_ratios_against_the_engine(self):
        rows = [
            row("engine", 10000, 400, 800, 3.0), row("tokio", 10000, 1000, 1600, 9.0),
            row("engine", 10000, 300, 2000, 4.0), row("tokio", 10000, 1100, 1800, 8.0),
            row("engine", 10000, 500, 700, 3.5), row("tokio", 10000, 900, 1700, 8.5),
            row("engine", 1000, 450, 900, 5.0), row("tokio", 1000, 900, 450, 10.0),
        ]
        s = compare.summarize(rows)
        med = {(m["intended_rate"], m["system"]): m for m in s["medians"]}
        self.assertEqual(med[(10000, "engine")]["runs"], 3)
        # Each figure's own median: the p99 of 2,000 in the run with the lowest p50 is
        # not carried along with it.
        self.assertEqual(med[(10000, "engine")]["p50_us"], 400)
        self.assertEqual(med[(10000, "engine")]["p99_us"], 800)
        self.assertEqual(med[(10000, "engine")]["cpu_us_per_update"], 3.5)
        self.assertEqual(med[(10000, "tokio")]["p50_us"], 1000)
        ratios = {(r["intended_rate"], r["baseline"]): r for r in s["ratios"]}
        self.assertEqual(set(ratios), {(10000, "tokio"), (1000, "tokio")})
        # Baseline ÷ engine: above 1 the engine is better, below 1 worse.
        self.assertAlmostEqual(ratios[(10000, "tokio")]["p50"], 2.5)
        self.assertAlmostEqual(ratios[(10000, "tokio")]["p99"], 1700 / 800)
        self.assertAlmostEqual(ratios[(10000, "tokio")]["cpu"], 8.5 / 3.5)
        self.assertAlmostEqual(ratios[(1000, "tokio")]["p99"], 0.5)

    def test_no_ratio_where_the_engine_did_not_run_or_a_figure_is_missing(self):
        rows = [row("tokio", 10000, 1000, 1600, 9.0), row("python", 10000, 2000, 4000, 20.0),
                row("engine", 1000, 450, 900, None), row("python", 1000, 900, 1800, 25.0)]
        s = compare.summarize(rows)
        self.assertEqual([(r["intended_rate"], r["baseline"]) for r in s["ratios"]],
                         [(1000, "python")])
        self.assertAlmostEqual(s["ratios"][0]["p50"], 2.0)
        self.assertIsNone(s["ratios"][0]["cpu"])
        # The printed summary copes with the missing figure.
        compare.print_summary(s)


if __name__ == "__main__":
    unittest.main()
