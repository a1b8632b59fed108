"""AVA v2.2, SlowFast R50 8x8 + ACAR head (HR2O depth 2): reference configs/AVA/SLOWFAST_R50_ACAR_HR2O.yaml.

Launch unchanged on real data: the files as distributed, under `data.root` = data/ava (field: file):
  data.frames_dir       frames/<video_id>/image_%06d.jpg  (tools/extract_frames.py: 30 fps from second 900)
  data.train_csv        ava_train_v2.2.csv                 (AVA v2.2 GT, 80-id actions; ids outside the map skipped)
  data.val_csv          ava_val_v2.2.csv                   (GT of the evaluation)
  data.exclusions       ava_val_excluded_timestamps_v2.2.csv
  data.label_map        ava_action_list_v2.2_for_activitynet_2019.pbtxt   (the 60 evaluated classes)
  data.train_proposals  person_box_67091280_iou90/ava_detection_train_boxes_and_labels_include_negative_v2.2.csv
                        (PySlowFast's copy of the LFB "FAIR" person detections; matched boxes carry their GT
                        box's actions, unmatched ones -1: negatives), kept at score >= 0.9
  data.val_proposals    person_box_67091280_iou90/ava_detection_val_boxes_and_labels.csv, kept at score >= 0.85
                        (LFB's ava_val_predicted_boxes.csv, the reference's source, reads the same way)
  pretrained/SLOWFAST_R50_K400/  (tools/convert_torch_checkpoint.py of the reference's SLOWFAST_R50_K400.pth.tar)
  python run.py --config=configs/ava_slowfast_r50_acar.py --workdir=runs/ava_r50_acar
Training boxes: the GT boxes plus the proposals >= 0.9 (data_pipelines/ava_files.py states the rule), the
reference's ava_train_v2.2_with_fair_0.9. Global batch: the paper's 32 clips at lr 0.008 -> 0.064; with
another `train.batch_size` the rates scale linearly (`train.scale_lr_with_batch`), and the epoch-valued warmup
and milestones follow the run's real steps per epoch.
Released reference model: 27.83 mAP (27.74 re-evaluated) on AVA v2.2 val, single scale (model_zoo/README.md).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    """R50 ACAR on AVA v2.2 with the reference's hyperparameters."""
    config = base.get_config()
    config.seed = 1                   # ref: manual_seed: 1
    config.log_every_steps = 20       # ref: print_freq: 20

    backbone = config.model.backbone
    backbone.layers = (3, 4, 6, 3)    # ref: arch slowfast50
    backbone.width = 64               # ref: models/backbones/slowfast.py (slow_inplanes 64)
    backbone.alpha = 4                # ref: backbone.kwargs.alpha
    backbone.beta = 0.125             # ref: backbone.kwargs.beta
    backbone.fuse_only_conv = False   # ref: backbone.kwargs.fuse_only_conv (conv + BN + ReLU)
    backbone.fuse_kernel_size = 7     # ref: backbone.kwargs.fuse_kernel_size
    backbone.slow_full_span = True    # ref: backbone.kwargs.slow_full_span
    backbone.res5_dilation = 2        # ref: slowfast.py res5 stride 1, dilation 2
    config.model.num_classes = 60     # ref: neck/head num_classes (the 60-class ActivityNet label map)

    head = config.model.head
    head.type = "acar"                # ref: head.type
    head.roi_spatial = 7              # ref: head.kwargs.roi_spatial
    head.depth = 2                    # ref: head.kwargs.depth
    head.mlp_1x1 = False              # ref: ACARHead default
    head.reduce_dim = 1024            # ref: ACARHead default
    head.hidden_dim = 512             # ref: ACARHead default (paper: d = 512)
    head.kernel_size = 3              # ref: ACARHead default
    head.downsample = "max2x2"        # ref: ACARHead default (paper: 2x2 max pool before HR2O)
    head.dropout = 0.0                # ref: ACARHead default
    head.hr2o_dropout = 0.2           # ref: HR2O_NL Dropout(0.2)

    data = config.data
    data.dataset = "ava"
    data.root = "data/ava"
    data.source = "frames"            # "tfds": packed shards (python tools/prepare_tfds.py --config=THIS --split=...)
    data.tfds_dir = "tfds_clips_32x2"  # shards of 32 frames at stride 2, relative to root
    data.train_proposals = (
        "person_box_67091280_iou90/ava_detection_train_boxes_and_labels_include_negative_v2.2.csv")
    data.train_proposal_threshold = 0.9   # ref: ava_train_v2.2_with_fair_0.9 (GT + FAIR >= 0.9)
    data.val_proposals = "person_box_67091280_iou90/ava_detection_val_boxes_and_labels.csv"
    data.val_proposal_threshold = 0.85    # ref: val annotation ava_val_v2.2_fair_0.85
    data.num_frames = 32              # ref: TemporalCenterCrop size 64 step 2 -> 32 frames (8x8: 4T, T = 8)
    data.frame_stride = 2             # ref: TemporalCenterCrop step 2
    data.short_side = 256             # ref: train/val Scale resize 256
    data.eval_scales = (256,)         # ref: val Scale resize 256 (paper's multi-scale test: (256, 288, 320))
    data.eval_flip = False            # ref: no flip at val (paper's multi-view test adds it)
    data.hflip = True                 # ref: train RandomHorizontalFlip
    data.pixel_scale = 255.0          # ref: ToTensor norm_value 255.
    data.mean = (0.45, 0.45, 0.45)    # ref: Normalize mean
    data.std = (0.225, 0.225, 0.225)  # ref: Normalize std
    data.box_jitter = 0.075           # ref: neck bbox_jitter scale 0.075, num 1
    data.box_buckets = (8, 16, 32, 64)  # N_max buckets; a more crowded keyframe adds a last bucket sized from the data

    train = config.train
    train.batch_size = 32             # paper: 32 clips per batch (ref: batch_size 1 per GPU x world size)
    train.scale_lr_with_batch = True  # ref author: lr scales linearly with the global batch (8 clips: 0.016)
    train.reference_batch_size = 32   # the rates below are for 32 clips (4 nodes x 8 GPUs x 1 clip)
    train.num_epochs = 6.0            # ref: n_epochs: 6
    train.num_steps = -1
    train.pose_softmax = True         # ref: loss ava_criterion pose_softmax: True
    train.num_pose_classes = 13       # ref: losses.py (first 13 of the 60 classes are poses)
    opt = train.optimizer
    opt.momentum = 0.9                # ref: optimizer.kwargs.momentum
    opt.nesterov = True               # ref: optimizer.kwargs.nesterov
    opt.weight_decay = 1e-7           # ref: optimizer.kwargs.weight_decay
    sched = train.schedule
    sched.type = "step"               # ref: scheduler.type
    sched.base_lr = 0.008             # ref: scheduler.base_lr
    sched.warmup_lr = 0.064           # ref: scheduler.warmup_lr
    sched.warmup_epochs = 1.0         # ref: scheduler.warmup_epochs
    sched.milestone_epochs = (5.6, 5.8)  # ref: scheduler.milestone_epochs
    sched.lr_mults = (0.1, 0.1)       # ref: scheduler.lr_mults

    config.checkpoint.init_from = "pretrained/SLOWFAST_R50_K400"  # ref: backbone.pretrain.path (converted)
    config.checkpoint.init_scope = "backbone"   # ref: Kinetics-400 backbone only, head from scratch
    config.checkpoint.every_steps = 1000
    config.eval_every_steps = -1      # ref: every epoch (val_freq: 1); here: at the end
    config.eval_batch_size = 8
    config.eval_csv_decimals = 3      # ref: main.py writes boxes and scores with '%.3f' (-1: full precision)
    return config
