"""The schema of every experiment config: each field named once, with a comment, at its full-size default
(SlowFast R50 8x8 + ACAR on AVA v2.2 with the reference's recipe). configs/default.py (the tiny synthetic job)
and the paper configs start from `get_config()` here and change fields.

Override from the command line: `python run.py --config=configs/<name>.py --config.train.num_steps=100`.
"""

import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
    """The model: SlowFast R50 8x8 backbone + ACAR head. Field names follow the reference's kwargs."""
    model = ml_collections.ConfigDict()
    model.num_classes = 60            # K: size of the label map's class list
    model.dtype = "float32"           # "bfloat16": convs and matmuls in bf16, params / BN stats / loss in f32
    model.remat = False               # rematerialise each backbone stage (memory for compute; no-op on XLA:CPU)
    model.conv3d = "auto"             # "auto" | "native" | "folded": 3-D convs as lax 3-D convs or time folded
                                      # into the batch (2-D convs / matmuls); auto: folded on CPU, native on GPU/TPU
    model.conv_kernel_grad = "auto"   # folded path: "auto" | "taps" | "xla": how conv kernel gradients are computed
                                      # (same sums; auto: the stems' as matmuls, measured faster; layers.Conv3d)

    backbone = model.backbone = ml_collections.ConfigDict()
    backbone.layers = (3, 4, 6, 3)    # R50; R101 (3, 4, 23, 3); R152 (3, 8, 36, 3)
    backbone.width = 64               # slow stem channels; stage planes are width * (1, 2, 4, 8), out width * 32
    backbone.alpha = 4                # fast/slow frame-rate ratio
    backbone.beta = 0.125             # fast/slow channel ratio (fast stem = int(width * beta))
    backbone.fuse_only_conv = False   # lateral fusion: conv only (True) or conv + BN + ReLU (False)
    backbone.fuse_kernel_size = 7     # temporal kernel of the lateral fusion conv
    backbone.slow_full_span = True    # slow frames at linspace(0, T-1, T//alpha) (True) or ::alpha (False)
    backbone.res5_dilation = 2        # res5 stride 1 with this spatial dilation (feature stride 16)
    backbone.bn_eps = 1e-5            # frozen BatchNorm epsilon

    head = model.head = ml_collections.ConfigDict()
    head.type = "acar"                # "linear" | "acar" | "acfb" (reads a bank) | "lfb" (LFB-style variant)
    head.roi_spatial = 7              # RoIAlign output size (then max pooled to 1x1)
    head.dropout = 0.0                # dropout before the classifier
    head.reduce_dim = 1024            # ACAR: conv_reduce output channels
    head.hidden_dim = 512             # ACAR: d of HR2O
    head.depth = 2                    # ACAR: number of HR2O blocks
    head.kernel_size = 3              # ACAR: HR2O q/k/v kernel
    head.downsample = "max2x2"        # ACAR: "max2x2" (max pool 3x3 stride 2 pad 1) or "none"
    head.mlp_1x1 = False              # ACAR: HR2O output conv 1x1 instead of kernel_size
    head.hr2o_dropout = 0.2           # ACAR: dropout inside each HR2O block
    head.roi_sampling_ratio = -1      # RoIAlign sampling ratio (-1: adaptive, as the reference)
    return model


def get_data_config() -> ml_collections.ConfigDict:
    """Where the data is and how clips are made."""
    data = ml_collections.ConfigDict()
    data.dataset = "ava"              # "ava" | "ava_kinetics" | "synthetic" | "synthetic_longterm"
    data.root = "data/ava"            # dataset root: frames/<video_id>/image_%06d.jpg and annotation files
    data.source = "frames"            # "frames": read each clip's JPEG files | "tfds": read the packed ArrayRecord
    #                                   shards of tfds_dir (tools/prepare_tfds.py; same batches, few large files)
    data.tfds_dir = "tfds_clips"      # prepared shards, relative to root (one folder per num_frames x frame_stride)
    data.frames_dir = "frames"        # relative to root
    data.label_map = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"  # relative to root (or absolute)
    data.train_csv = "ava_train_v2.2.csv"
    data.val_csv = "ava_val_v2.2.csv"
    data.exclusions = "ava_val_excluded_timestamps_v2.2.csv"
    data.train_proposals = ""         # detections CSV with scores merged into training boxes ("" = GT only)
    data.val_proposals = "ava_val_predicted_boxes.csv"  # detections used at eval ("" = evaluate on GT boxes)
    data.train_proposal_threshold = 0.9
    data.val_proposal_threshold = 0.85
    data.kinetics_videos_dir = ""     # AVA-Kinetics: Kinetics clips as mp4 (one keyframe per clip)
    data.kinetics_train_csv = ""
    data.kinetics_val_csv = ""
    data.kinetics_val_proposals = ""  # AVA-Kinetics: detections for the Kinetics val keyframes ("" = GT)
    data.kinetics_val_proposal_threshold = 0.65  # paper: Kinetics detections kept at >= 0.65 at test
    data.fps = 30                     # frame rate of the extracted frames
    data.start_second = 900           # AVA: frame 1 is second 900
    data.num_frames = 32              # 4T frames fed to the model (T x tau = 8 x 8 -> 32 at stride 2)
    data.frame_stride = 2
    data.short_side = 256             # training scale: resize short side to this
    data.eval_scales = (256,)         # test scales; the paper's multi-scale test uses (256, 288, 320)
    data.eval_flip = False            # add horizontally flipped views at test
    data.pixel_scale = 255.0          # x / pixel_scale before (x - mean) / std (R101 reference: 1.0)
    data.mean = (0.45, 0.45, 0.45)
    data.std = (0.225, 0.225, 0.225)
    data.hflip = True                 # random horizontal flip at training
    data.box_jitter = 0.075           # per-coordinate jitter scale (fraction of the box size) at training
    data.box_buckets = (8, 16, 32)    # N_max buckets: each keyframe goes to the smallest that holds all its boxes;
    #                                   a keyframe with more adds one sized from the data (never split or cut)
    data.spatial_buckets = ()         # ((H, W), ...) padded sizes; () = derive from the dataset index
    data.max_spatial_buckets = 4      # derived buckets: each exact size up to this many, else aspect groups
    data.eval_pad_spatial = False     # eval: False = each exact resized size (per test scale) is its own compiled
                                      # shape, nothing padded (the reference's 1 clip per GPU); True = pad into
                                      # the training buckets above (fewer compiles, logits change near padding)
    data.shuffle_seed = 0
    data.num_parallel_calls = -1      # tf.data.AUTOTUNE
    data.prefetch = 2
    return data


def get_synthetic_config() -> ml_collections.ConfigDict:
    """The generated dataset written under data.root when absent."""
    synth = ml_collections.ConfigDict()
    synth.seed = 0
    synth.num_train_videos = 240      # 2,400 train scenes: each seen about twice in the default job's 600 steps
    synth.num_val_videos = 24
    synth.keyframes_per_video = 10    # one independent scene per keyframe, timestamps start_second+1 ...
    synth.height = 64                 # frame size in pixels: a wide strip, so that actors and the marker fit
    synth.width = 384                 # relation_gap apart (data_pipelines/synthetic.py)
    synth.relation_gap = 84           # px between actors / the marker: > the 75 px a tiny-backbone RoI feature sees
    synth.jpeg_quality = 90
    # data.dataset "synthetic_longterm" only (data_pipelines/synthetic_longterm.py; the default set ignores them):
    synth.longterm_radius = 3         # long-term labels read the other seconds within +-this (= bank.window_radius)
    synth.p_event = 0.08              # per second: an actor turns red / the marker is shown, independently
    return synth


def get_bank_config() -> ml_collections.ConfigDict:
    """ACFB's actor-context feature bank (docs/acfb.md): how it is extracted and how windows are read."""
    bank = ml_collections.ConfigDict()
    bank.dir = ""                     # bank root ("" = <source run>/bank); one sub-directory per (split, scale)
    bank.source_config = ml_collections.ConfigDict()   # ACFB / LFB configs: the config of the ACAR run the bank
    #                                   comes from, imported (its model, train recipe and checkpoint fields; data,
    #                                   seed and bank fields are this config's)
    bank.source_workdir = ""          # the trained ACAR run ("" = --workdir for an ACAR config, <workdir>/acar
    #                                   for a chain config)
    bank.source_num_steps = -1        # > 0: the chain trains the ACAR source run this many steps
    bank.content = "maps"             # "maps": first-order actor-context maps (ACFB); "actors": actor RoI
    #                                   features only (the LFB-style variant)
    bank.train_boxes = "gt"           # boxes of the train bank: "gt" or a detections CSV (AVA proposal format)
    bank.val_boxes = "gt"             # boxes of the val bank (no GT, e.g. a test set: a detections CSV)
    bank.dtype = "float16"            # storage dtype of the maps: "float16" | "bfloat16" | "float32"
    bank.batch_size = 2               # clips per device per extraction batch
    bank.window_radius = 10           # window: bank entries within +-radius s of the keyframe (AVA: ~20 s)
    bank.whole_video = False          # window: every entry of the video (Kinetics clips, <= 10 s)
    bank.max_entries = 64             # window slots M (keyframes x actors); a fuller window is an error
    bank.cache_mb = 1024.0            # bank seconds recently read stay in memory (LRU) up to this many MB
    bank.chain = False                # run.py's train_and_eval runs the chain: train the ACAR source, extract
    #                                   its bank(s), train this head, evaluate (acar_jax/training/chain.py)
    bank.chain_variants = ml_collections.ConfigDict()  # chain: more bank-head configs (stage name -> config)
    #                                   trained on the same source run
    return bank


def get_train_config() -> ml_collections.ConfigDict:
    """Optimisation, following the reference's SGD + warmup/step schedule."""
    train = ml_collections.ConfigDict()
    train.batch_size = 32             # global clips per step (across all devices and hosts)
    train.grad_accum_steps = 1        # micro-batches per step (batch_size / grad_accum_steps per micro-batch)
    train.scale_lr_with_batch = False  # linear scaling rule: the schedule's rates x batch_size / reference_batch_size
    train.reference_batch_size = 32   # the global batch the schedule's rates are given for (the paper: 32 clips)
    train.num_epochs = 6.0            # length of training in epochs of the train set
    train.num_steps = -1              # > 0 overrides num_epochs
    train.pose_softmax = True         # loss: softmax over the 13 pose classes, sigmoid elsewhere
    train.num_pose_classes = 13

    opt = train.optimizer = ml_collections.ConfigDict()
    opt.name = "sgd"                  # "sgd" (the reference's) | "adamw" (b1, b2, eps below; decoupled decay)
    opt.momentum = 0.9
    opt.nesterov = True
    opt.weight_decay = 1e-7           # sgd: L2 added to the gradient (PyTorch semantics); adamw: decoupled
    opt.b1 = 0.9                      # adamw only
    opt.b2 = 0.999                    # adamw only
    opt.eps = 1e-8                    # adamw only

    sched = train.schedule = ml_collections.ConfigDict()
    sched.type = "step"               # "step" | "cosine"
    sched.base_lr = 0.008             # lr at step 0 (start of warmup)
    sched.warmup_lr = 0.064           # lr at the end of warmup
    sched.warmup_epochs = 1.0
    sched.milestone_epochs = (5.6, 5.8)
    sched.warmup_steps = -1           # > 0 overrides warmup_epochs (paper's AVA-Kinetics recipe: 9k steps)
    sched.milestone_steps = ()        # non-empty overrides milestone_epochs (paper: 51k, 53k)
    sched.lr_mults = (0.1, 0.1)
    sched.min_lr = 0.0                # cosine: final rate (the reference's eta_min)
    return train


def get_demo_config() -> ml_collections.ConfigDict:
    """`run.py --mode=demo`: run the model on one video (acar_jax/inference/demo.py)."""
    demo = ml_collections.ConfigDict()
    demo.video = ""                   # input video (any format ffmpeg reads); its file name stem is the video_id
    demo.boxes_csv = ""               # person boxes, AVA proposal format (video_id,timestamp,x1,y1,x2,y2,,score),
    #                                   timestamps in seconds of the video; "" = demo.detector on each keyframe
    demo.box_threshold = 0.85         # boxes_csv rows with score >= this are used (data.val_proposal_threshold)
    demo.detector = "hog"             # person detector without boxes_csv: "hog" (OpenCV, no download),
    #                                   "torchvision" (COCO Faster R-CNN R50-FPN), "onnx" (a YOLO-style export)
    demo.detector_weights = ""        # torchvision: a state dict ("" = the torch hub cache); onnx: the .onnx file
    demo.detector_threshold = 0.5     # detector boxes with score >= this are used (hog: squashed SVM score)
    demo.detector_nms_iou = 0.5       # detector boxes overlapping a better one by IoU > this are dropped
    demo.stride_s = 1                 # a keyframe every stride_s seconds (0, stride_s, ...)
    demo.frame_height = 340           # decode height, as tools/extract_frames.py (then the eval resize)
    demo.top_k = 3                    # actions written per person in annotated.mp4
    demo.score_threshold = 0.3        # actions below this score are not written in annotated.mp4
    demo.output_dir = ""              # "" = <workdir>/demo/<video_id>; actions.csv and annotated.mp4 go there
    return demo


def get_config() -> ml_collections.ConfigDict:
    """Every field of an experiment at its full-size default."""
    config = ml_collections.ConfigDict()
    config.seed = 0                   # parameters from seed, dropout from seed + 1; batch order: data.shuffle_seed
    config.model = get_model_config()
    config.data = get_data_config()
    config.synthetic = get_synthetic_config()
    config.train = get_train_config()
    config.bank = get_bank_config()
    config.demo = get_demo_config()

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = 1000  # async save interval
    config.checkpoint.max_to_keep = 2
    config.checkpoint.init_from = ""      # orbax dir (ours or converted) to initialise from
    config.checkpoint.init_scope = "full"  # "full" | "backbone" | "shared" (every parameter of the same path
    #                                        and shape: a bank head from its ACAR source run)

    config.log_every_steps = 20
    config.eval_every_steps = -1          # -1: evaluate at the end only
    config.eval_batch_size = 8
    # Decimals of boxes and scores in the result CSV; -1 = full precision. The reference writes 3, and the
    # official evaluator's top-50 cut per keyframe breaks ties on the rounded scores.
    config.eval_csv_decimals = 3
    return config
