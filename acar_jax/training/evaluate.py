"""run.py --mode=eval: the latest checkpoint of a workdir scored on the val split (with a bank head's val
banks), the same Evaluator the training loop runs."""

from __future__ import annotations

import os

import jax
import ml_collections
from clu import metric_writers

from acar_jax.bank.inputs import open_bank_inputs
from acar_jax.core import parallel
from acar_jax.evaluation.evaluator import Evaluator
from acar_jax.evaluation.sharded_logits import sharded_logits_fn
from acar_jax.launch.prepare import prepare_run
from acar_jax.models.detector import create_model
from acar_jax.state import checkpoints
from acar_jax.state.restore import ModelFactory, restore_model


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *,
                        create: ModelFactory = create_model) -> dict:
    """{"eval/mAP", ...} of the latest checkpoint of `workdir`; no optimiser is built."""
    workdir = os.path.abspath(workdir)
    checkpoints.quiet_orbax()
    prepare_run(config, ("val",))
    bank = open_bank_inputs(config, workdir, ("val",))
    directory = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
    if checkpoints.latest_step(directory) is None:
        raise FileNotFoundError(f"--mode=eval: no checkpoint in {directory}; train first")
    restored = restore_model(config, directory, create=create)
    mesh = parallel.make_mesh()
    logits_fn = sharded_logits_fn(restored.graphdef, parallel.replicate(restored.weights, mesh), mesh)
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    metrics = Evaluator(config, workdir).evaluate(logits_fn, step=restored.step, writer=writer,
                                                  bank_inputs=None if bank is None else bank.eval_inputs)
    writer.flush()
    return {f"eval/{k}": v for k, v in metrics.items()}
