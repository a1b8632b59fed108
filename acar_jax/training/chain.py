"""The ACFB chain in one command: train the ACAR source run -> extract its bank(s) -> train the bank head(s)
-> evaluate; what `python run.py --config=configs/default_acfb.py` runs (a config with `bank.chain`).

Stages, in order, and where each writes:
  acar         <workdir>/acar        train_and_evaluate(bank_source_config(config)): the ACAR model, its figures
  bank_maps    <workdir>/acar/bank   extract_banks of the ACFB head's content (first-order maps)
  acfb         <workdir>             train_and_evaluate(config), initialised from the ACAR checkpoint
  bank_actors  <workdir>/acar/bank   the LFB-style variant's bank (actor features), when a variant reads it
  <variant>    <workdir>/<name>      each config of bank.chain_variants (name -> config), the same way
Every stage gets the chain config's data, synthetic set and seed. A finished stage writes
`<workdir>/chain/<stage>.json` (its metrics) last and atomically, so a re-run skips finished stages and never
takes a half-done one for done: an interrupted stage resumes itself (training from its latest checkpoint,
extraction from its finished videos).
"""

from __future__ import annotations

import json
import os

import ml_collections
from absl import logging

from acar_jax.bank import extraction
from acar_jax.bank.inputs import BANK_HEADS, bank_source_config, bank_source_workdir, config_reads_bank
from acar_jax.training import loop

SOURCE_STAGE = "acar"
BANK_STAGE = "bank"
HEAD_STAGE = "acfb"


def _marker(workdir: str, stage: str) -> str:
    return os.path.join(workdir, "chain", f"{stage}.json")


def _write_json_atomic(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _stage_config(config: ml_collections.ConfigDict, head: ml_collections.ConfigDict, source_dir: str
                  ) -> ml_collections.ConfigDict:
    """`head` (a bank-head config) with the chain's data, seed and source run, initialised from the source."""
    out = ml_collections.ConfigDict(head.to_dict())
    for key in ("data", "synthetic"):
        out[key] = ml_collections.ConfigDict(config[key].to_dict())
    out.seed = int(config.seed)
    out.bank.chain = False
    out.bank.chain_variants = ml_collections.ConfigDict()
    out.bank.source_workdir = source_dir
    out.bank.dir = config.bank.dir
    out.bank.source_num_steps = int(config.bank.source_num_steps)
    if not out.checkpoint.init_from:
        out.checkpoint.init_from = source_dir      # backbone and head start from the trained ACAR model
    return out


def variant_configs(config: ml_collections.ConfigDict, source_dir: str) -> dict[str, ml_collections.ConfigDict]:
    """Stage name -> stage config, for each config of bank.chain_variants."""
    out = {}
    for name, variant in config.bank.chain_variants.items():
        if not config_reads_bank(variant):
            raise ValueError(f"bank.chain_variants.{name}: model.head.type {variant.model.head.type!r} is not a "
                             f"bank head {BANK_HEADS}")
        out[name] = _stage_config(config, variant, source_dir)
    return out


def run_chain(config: ml_collections.ConfigDict, workdir: str, *, hooks: loop.Hooks | None = None) -> dict:
    """Runs (or finishes) every stage; returns {"<stage>/<metric>": value} of every evaluated stage."""
    if not config_reads_bank(config):
        raise ValueError(f"bank.chain: the chain trains a bank head; model.head.type is "
                         f"{config.model.head.type!r}, expected one of {BANK_HEADS}")
    hooks = loop.Hooks() if hooks is None else hooks
    workdir = os.path.abspath(workdir)
    source_dir = bank_source_workdir(config, workdir)
    head = _stage_config(config, config, source_dir)
    variants = variant_configs(config, source_dir)
    results: dict[str, dict] = {}

    def stage(name: str, run, *, evaluated: bool = True) -> bool:
        """Runs a stage unless its marker exists; False when it stopped early (a signal: no eval metrics)."""
        marker = _marker(workdir, name)
        if os.path.isfile(marker):
            with open(marker) as f:
                results[name] = json.load(f)
            logging.info("chain: stage %s already finished (%s), skipped", name, marker)
            return True
        logging.info("chain: stage %s", name)
        metrics = {k: v for k, v in run().items() if isinstance(v, int | float | str)}
        if evaluated and "eval/mAP" not in metrics:
            logging.warning("chain: stage %s stopped before its evaluation; re-run the command to finish", name)
            return False
        _write_json_atomic(marker, metrics)
        results[name] = metrics
        return True

    source = bank_source_config(head)
    stages = [(SOURCE_STAGE, lambda: loop.train_and_evaluate(source, source_dir, hooks=hooks), True)]
    for name, head_config in [(HEAD_STAGE, head), *variants.items()]:
        bank_stage = f"{BANK_STAGE}_{head_config.bank.content}"     # each content's bank once, before its head
        if bank_stage not in [s for s, _, _ in stages]:
            stages.append((bank_stage,
                           lambda c=head_config: extraction.extract_banks(c, workdir, create=hooks.create_model),
                           False))
        head_dir = workdir if name == HEAD_STAGE else os.path.join(workdir, name)
        stages.append((name, lambda c=head_config, d=head_dir: loop.train_and_evaluate(c, d, hooks=hooks),
                       True))
    for name, run, evaluated in stages:
        if not stage(name, run, evaluated=evaluated):
            break
    return {f"{name}/{key}": value for name, metrics in results.items() for key, value in metrics.items()
            if key.startswith("eval/")}
