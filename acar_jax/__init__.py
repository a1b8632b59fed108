"""acar-jax: ACAR-Net (Actor-Context-Actor Relation Network) for spatio-temporal action detection, in JAX/Flax.

The stages, in the order the data flows (each imports only from stages before it; tests/test_layout.py):
  core        the batch contract and the device mesh
  ops         RoIAlign
  launch      config files, huge pages, the multi-host start, the built-in datasets and the run's data check
  interop     PyTorch checkpoints and the PyTorch reference oracles
  models      SlowFast and the Linear / ACAR / ACFB / LFB heads
  state       the train state, checkpoints and the one restore of a trained model
  evaluation  the Evaluator and the official frame-mAP
  bank        the actor-context feature bank: what it stores, its extraction and its windows
  training    the train step and the loop; inference: the model API, the demo and the exports
The public Python interface is `acar_jax.api`; the command line is run.py.
"""
