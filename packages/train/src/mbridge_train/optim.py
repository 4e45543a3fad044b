"""Optimizer and learning-rate schedule from OptimizerConfig + SchedulerConfig (megatron-core's)."""

from __future__ import annotations

from mbridge_config import OptimizerConfig, SchedulerConfig
from mbridge_config.container import schedule_lengths


def build_optimizer(cfg, model: list):
    """megatron-core's optimizer over the trainable parameters of ``model`` (frozen ones, e.g.
    a PEFT base, are left out by megatron's parameter grouping). Its precision fields were
    derived from the model by ``ConfigContainer.finalize``."""
    from megatron.core.optimizer import get_megatron_optimizer

    return get_megatron_optimizer(cfg.optimizer, model)


def build_scheduler(cfg, optimizer):
    """OptimizerParamScheduler counted in samples (megatron's convention: step(increment=gbs)).
    The lengths were checked by ``validate()`` (rule_scheduler reads the same schedule_lengths)."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    sched, opt, train = cfg.scheduler, cfg.optimizer, cfg.train
    gbs = train.global_batch_size
    warmup_iters, decay_iters = schedule_lengths(cfg)
    decay_steps, warmup_steps = decay_iters * gbs, warmup_iters * gbs
    wd_steps = (sched.wd_incr_steps or train.train_iters or decay_iters) * gbs
    wsd_steps = sched.lr_wsd_decay_iters * gbs if sched.lr_wsd_decay_iters else None
    return OptimizerParamScheduler(
        optimizer,
        init_lr=sched.lr_warmup_init,
        max_lr=opt.lr,
        min_lr=opt.min_lr,
        lr_warmup_steps=warmup_steps,
        lr_decay_steps=decay_steps,
        lr_decay_style=sched.lr_decay_style,
        start_wd=sched.start_weight_decay if sched.start_weight_decay is not None
        else opt.weight_decay,
        end_wd=sched.end_weight_decay if sched.end_weight_decay is not None else opt.weight_decay,
        wd_incr_steps=wd_steps,
        wd_incr_style=sched.weight_decay_incr_style,
        use_checkpoint_opt_param_scheduler=sched.use_checkpoint_opt_param_scheduler,
        override_opt_param_scheduler=sched.override_opt_param_scheduler,
        wsd_decay_steps=wsd_steps,
        lr_wsd_decay_style=sched.lr_wsd_decay_style,
    )


_FIELDS = {  # scheduler state -> the config field a user sets for it
    "max_lr": "optimizer.lr", "min_lr": "optimizer.min_lr",
    "lr_warmup_steps": "scheduler.lr_warmup_iters", "lr_decay_steps": "scheduler.lr_decay_iters",
    "lr_decay_style": "scheduler.lr_decay_style", "start_wd": "scheduler.start_weight_decay",
    "end_wd": "scheduler.end_weight_decay", "wd_incr_steps": "scheduler.wd_incr_steps",
    "wd_incr_style": "scheduler.weight_decay_incr_style"}


def reconcile_scheduler(cfg, scheduler, saved: dict, say=print,
                        saved_progress: dict | None = None) -> dict:
    """The scheduler state to load on resume, before megatron's load_state_dict (which asserts
    on any difference). A larger ``train.train_iters`` extends the run: the lengths derived
    from it (decay, weight-decay ramp, a warm-up fraction) take this run's values, in one line.
    Any other difference (a changed batch size included: ``saved_progress``, the checkpoint's
    train state, tells) is one ConfigError naming the fields and both ways out. With
    ``override_opt_param_scheduler`` / ``use_checkpoint_opt_param_scheduler`` megatron decides."""
    from mbridge_config.errors import ConfigError

    sched = cfg.scheduler
    if sched.override_opt_param_scheduler or sched.use_checkpoint_opt_param_scheduler:
        return saved
    now = scheduler.state_dict()
    differ = {k: (saved[k], now[k]) for k in _FIELDS if k in saved and saved[k] != now[k]}
    if not differ:
        return saved
    derived = set()
    if sched.lr_decay_iters is None:
        derived.add("lr_decay_steps")
        if sched.lr_warmup_fraction is not None:
            derived.add("lr_warmup_steps")
    if sched.wd_incr_steps is None:
        derived.add("wd_incr_steps")
    gbs = cfg.train.global_batch_size
    progress = saved_progress or {}
    same_batch = not progress.get("step") or (
        progress.get("consumed_train_samples", 0) == progress["step"] * gbs)
    extended = same_batch and all(k in derived and isinstance(old, (int, float)) and new > old
                                  for k, (old, new) in differ.items())
    if extended:
        basis = "lr_decay_steps" if "lr_decay_steps" in differ else "wd_incr_steps"
        old_iters = differ[basis][0] // gbs if basis in differ else "?"
        changes = ", ".join(f"{k} {old // gbs} -> {new // gbs}" for k, (old, new) in
                            sorted(differ.items()))
        say(f" train.train_iters {old_iters} -> {cfg.train.train_iters}: the schedule is "
            f"extended on resume ({changes} iterations; the rest as saved)")
        return {**saved, **{k: new for k, (_, new) in differ.items()}}

    def label(key: str) -> str:
        return _FIELDS[key] + (" (from train.train_iters)" if key in derived else "")

    def unit(key: str) -> str:
        return " samples" if key.endswith("_steps") else ""

    shown = "; ".join(f"{label(k)}: {old!r}{unit(k)} in the checkpoint, {new!r} now"
                      for k, (old, new) in sorted(differ.items()))
    raise ConfigError(f"the checkpoint's learning-rate schedule differs from this run's ({shown}"
                      "); set scheduler.override_opt_param_scheduler=True to use this run's "
                      "values or scheduler.use_checkpoint_opt_param_scheduler=True to keep the "
                      "checkpoint's", field="scheduler")


_GROUP_RATES = ("max_lr", "min_lr")


def align_param_groups(cfg, optimizer, saved_optimizer: dict) -> None:
    """megatron's optimizer pairs saved and current parameter groups by their settings,
    learning rates included, so a changed ``optimizer.lr`` fails as a KeyError inside it. When
    the user chose a side (``override_opt_param_scheduler``: this run's rates,
    ``use_checkpoint_opt_param_scheduler``: the checkpoint's), pair the groups without the rates
    and give both sides the chosen ones. Otherwise reconcile_scheduler has refused already."""
    from megatron.core.optimizer.optimizer import param_group_identifier_keys as keys

    sched = cfg.scheduler
    if not (sched.override_opt_param_scheduler or sched.use_checkpoint_opt_param_scheduler):
        return
    kept = [i for i, k in enumerate(keys) if k not in _GROUP_RATES]

    def identity(group):
        return tuple(group.get(keys[i], group.get(f"pre_{keys[i]}")) for i in kept)

    current = {identity(g): g for g in optimizer.param_groups}
    for saved in _saved_groups(saved_optimizer):
        mine = current.get(identity(saved))
        if mine is None:
            continue
        for rate in _GROUP_RATES:
            if sched.override_opt_param_scheduler:
                saved[rate] = mine.get(rate)
            else:
                mine[rate] = saved.get(rate)


def _saved_groups(state):
    if isinstance(state, dict):
        groups = state.get("param_groups")
        if isinstance(groups, list):
            yield from (g for g in groups if isinstance(g, dict))
        for value in state.values():
            if isinstance(value, (dict, list)):
                yield from _saved_groups(value)
    elif isinstance(state, list):
        for value in state:
            yield from _saved_groups(value)


def distributed_fused_adam_with_cosine_annealing(
    precision: str = "bf16-mixed",
    lr_warmup_iters: int = 2000,
    lr_decay_iters: int | None = None,
    adam_beta1: float = 0.9,
    adam_beta2: float = 0.95,
    adam_eps: float = 1e-5,
    weight_decay: float = 0.1,
    max_lr: float = 1e-4,
    min_lr: float | None = None,
    clip_grad: float = 1.0,
) -> tuple[OptimizerConfig, SchedulerConfig]:
    """(OptimizerConfig, SchedulerConfig): distributed Adam, linear warm-up, cosine decay to
    ``min_lr`` (default max_lr / 10), the usual LLM pretraining schedule."""
    bf16, fp16 = precision.startswith("bf16"), precision.startswith("16")
    optimizer = OptimizerConfig(
        optimizer="adam", lr=max_lr, min_lr=min_lr if min_lr is not None else 0.1 * max_lr,
        weight_decay=weight_decay, bf16=bf16, fp16=fp16, adam_beta1=adam_beta1,
        adam_beta2=adam_beta2, adam_eps=adam_eps, use_distributed_optimizer=True,
        clip_grad=clip_grad)
    scheduler = SchedulerConfig(
        lr_decay_style="cosine", lr_warmup_iters=lr_warmup_iters, lr_warmup_init=0.0,
        lr_decay_iters=lr_decay_iters, start_weight_decay=weight_decay,
        end_weight_decay=weight_decay, weight_decay_incr_style="constant")
    return optimizer, scheduler
