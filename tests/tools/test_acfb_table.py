"""tools/acfb_table.py: mean and spread over the seed runs' chain markers, and the per-seed difference to ACAR."""

import json

from tools import acfb_table


def test_table_of_two_seeds_with_paired_differences(tmp_path):
    for run, acar, acfb in (("000_seed=0", 0.40, 0.70), ("001_seed=1", 0.42, 0.66)):
        (tmp_path / run / "chain").mkdir(parents=True)
        for stage, value in (("acar", acar), ("acfb", acfb)):
            (tmp_path / run / "chain" / f"{stage}.json").write_text(
                json.dumps({"eval/mAP": value, "eval/mAP_long_actor": value / 2, "eval/mAP_long_context": value,
                            "eval/csv": "x"}))
    (tmp_path / "000_seed=0" / "chain" / "bank_maps.json").write_text(json.dumps({"bank/train_s64": "path"}))
    text = acfb_table.table(acfb_table.with_differences(acfb_table.collect(str(tmp_path))))
    assert "| acar | 41.00 ± 1.00 [40.00, 42.00] (n=2) | 20.50 ± 0.50 [20.00, 21.00] (n=2) |" in text
    assert text.splitlines()[0].endswith("| mAP_long_term |")                 # (long actor + long context) / 2
    assert "| 30.75 ± 0.75 [30.00, 31.50] (n=2) |\n| acfb |" in text
    assert "| acfb - acar | 27.00 ± 3.00 [24.00, 30.00] (n=2) |" in text
    assert "bank" not in text
