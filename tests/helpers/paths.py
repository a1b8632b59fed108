"""Paths the tests share: the checkout root and the 60-class AVA label map the package ships."""

from __future__ import annotations

import pathlib

from acar_jax.evaluation.ava_metric import DEFAULT_LABEL_MAP

REPO = pathlib.Path(__file__).resolve().parents[2]
AVA_LABEL_MAP = DEFAULT_LABEL_MAP          # acar_jax/data/ava_action_list_v2.2_for_activitynet_2019.pbtxt
