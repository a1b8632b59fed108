"""tools/seed_table.py: per-group mean and spread over seeds from the evaluator's per-class CSVs, paired by seed."""

import pytest

from tools import seed_table

CLASSES = ((1, "pose: tall", "pose"), (2, "red", "actor"), (3, "marker in the scene", "relational"))


def write_run(run_dir, aps):
    (run_dir / "eval").mkdir(parents=True)
    header = "class_id,name,group,num_gt,ap"
    lines = [header] + [f"{c},{n},{g},10,{ap}" for (c, n, g), ap in zip(CLASSES, aps, strict=True)]
    (run_dir / "eval" / "step600_per_class_ap.csv").write_text("\n".join(lines) + "\n")
    # an earlier evaluation must be ignored: the latest step wins
    (run_dir / "eval" / "step99_per_class_ap.csv").write_text(f"{header}\n1,pose: tall,pose,10,0.0\n")


def test_sweep_rows_pair_seeds_and_average_groups(tmp_path):
    write_run(tmp_path / "000_type=acar_seed=0", (0.8, 0.6, 0.7))
    write_run(tmp_path / "001_type=acar_seed=1", (0.8, 0.8, 0.9))
    write_run(tmp_path / "002_type=linear_seed=0", (0.8, 0.6, 0.4))
    write_run(tmp_path / "003_type=linear_seed=1", (0.8, 0.6, 0.3))
    results = seed_table.with_differences(seed_table.collect_sweep(str(tmp_path), classes=(3,)),
                                          "type=linear")
    text = seed_table.table(results)
    assert text.splitlines()[0] == "| run | mAP | mAP_pose | mAP_actor | mAP_relational | AP 3 marker in the scene |"
    assert "| type=acar | 76.67 ± 6.67 [70.00, 83.33] (n=2) |" in text
    # seed 0: 70 - 40, seed 1: 90 - 30 (paired by seed, not by order of the rows)
    assert text.splitlines()[-1].endswith("| 45.00 ± 15.00 [30.00, 60.00] (n=2) |")


def test_run_lists_and_clear_errors(tmp_path):
    write_run(tmp_path / "a0", (0.5, 0.5, 0.5))
    results = seed_table.collect_lists([f"acar={tmp_path / 'a0'}"])
    assert results["acar"]["mAP"] == {"0": pytest.approx(50.0)}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no eval/step"):
        seed_table.collect_lists([f"x={tmp_path / 'empty'}"])
    with pytest.raises(ValueError, match="LABEL=DIR"):
        seed_table.collect_lists(["no-label"])
    with pytest.raises(KeyError, match="baseline 'linear'"):
        seed_table.with_differences(results, "linear")
