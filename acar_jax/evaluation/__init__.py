"""Evaluation on the val split: test views, fusion, result CSVs, the official frame-mAP and its report."""
