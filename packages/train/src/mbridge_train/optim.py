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
