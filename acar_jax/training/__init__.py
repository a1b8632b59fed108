"""Training: optimiser, schedules, losses, the sharded train step, the loop, --mode=eval and the ACFB chain."""
