"""Every training field with the paper's values (section 3.1 of the paper; docs/paper-facts.md); the other configs start from this one.
It is the ZFNet ImageNet run (same as zfnet.py):

    python -m experiments.train_imagenet --config=experiments/configs/default.py --workdir=runs/zfnet

Fields: data (``dataset``, ``data_dir``, ``resize_size``/``image_size`` = the 256 center crop and the 224 training
crop, ``pixel_scale``, ``train_subset``/``eval_subset`` (0 = all)), model (``model``, ``remove``,
``model_overrides`` = per-layer fields for `zfjax.network.models.get`, ``init``, ``init_scale``, ``dropout``), optimization
(``batch_size``, ``learning_rate``, ``momentum``, ``weight_decay``, ``lr_schedule`` in constant/step/plateau,
``lr_decay_epochs``/``lr_decay_factor`` for step, ``plateau_factor``/``plateau_patience`` (epochs) for plateau,
``radius`` of the filter renormalization, ``dtype`` of the compute), length (``num_epochs`` sets the schedule;
``max_steps`` > 0 stops this run at that step), bookkeeping (``checkpoint_every_steps``, ``keep_checkpoints``,
``eval_every_steps`` (0 = every epoch), ``log_every_steps``, ``snapshot_epochs``, ``seed``, ``num_data_threads``).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "imagenet2012"
    c.data_dir = ""  # "" = the dataset's default (~/tensorflow_datasets, /usr/share/datasets/fashion-mnist)
    c.resize_size = 256
    c.image_size = 224
    c.pixel_scale = 1.0  # inputs stay in [0, 255] minus the mean, as the paper's radius assumes
    c.train_subset = 0
    c.eval_subset = 0
    c.num_data_threads = 8

    c.model = "zfnet"
    c.remove = ()
    c.model_overrides = ml_collections.ConfigDict()
    c.init = "paper"  # N(0, init_scale^2) weights, zero biases
    c.init_scale = 0.01
    c.dropout = 0.5

    c.batch_size = 128
    c.eval_batch_size = 128
    c.learning_rate = 0.01
    c.momentum = 0.9
    c.weight_decay = 0.0  # the paper mentions none
    c.lr_schedule = "plateau"  # the paper anneals by hand when validation error plateaus
    c.lr_decay_epochs = ()
    c.lr_decay_factor = 0.1
    c.plateau_factor = 0.1
    c.plateau_patience = 3
    c.radius = 0.1
    c.dtype = "float32"

    c.num_epochs = 70
    c.max_steps = 0
    c.checkpoint_every_steps = 2000
    c.keep_checkpoints = 3
    c.eval_every_steps = 0
    c.log_every_steps = 100
    c.snapshot_epochs = (1, 2, 5, 10, 20, 30, 40, 64)
    c.seed = 0
    return c


def check_fields(config: ml_collections.ConfigDict) -> None:
    """ValueError for unknown (e.g. misspelt) or missing training fields, naming them and the accepted ones."""
    fields = set(get_config().keys())
    unknown, missing = set(config.keys()) - fields, fields - set(config.keys())
    problems = [f"{what} fields {sorted(names)}" for what, names in (("unknown", unknown), ("missing", missing))
                if names]
    if problems:
        raise ValueError(f"config has {' and '.join(problems)}; the fields are {sorted(fields)} (see "
                         f"experiments/configs/default.py)")
