"""`python -m acar_jax.ava_eval -l LABELMAP -g GT -d DETECTIONS [-e EXCLUSIONS]`: the official frame-mAP CLI.

A stable command-line name for acar_jax.evaluation.ava_metric, where the metric lives.
"""

import sys

from acar_jax.evaluation.ava_metric import main

if __name__ == "__main__":
    main(sys.argv[1:])
