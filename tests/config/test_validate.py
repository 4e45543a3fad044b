"""Every rule of ConfigContainer.validate(), each broken on purpose, each naming its field."""

import copy

import pytest
from fake_provider import FakeModelProvider, FakePEFT

from mbridge_config import (
    CheckpointConfig,
    CommOverlapConfig,
    ConfigContainer,
    ConfigError,
    FaultToleranceConfig,
    FinetuningDatasetConfig,
    GPTDatasetConfig,
    OptimizerConfig,
    PackedSequenceSpecs,
    ProfilingConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainingConfig,
)
from mbridge_config.container import RULES

WORLD = 8


def valid() -> ConfigContainer:
    return ConfigContainer(
        model=FakeModelProvider(seq_length=256, tensor_model_parallel_size=2),
        train=TrainingConfig(train_iters=100, micro_batch_size=2, global_batch_size=32),
        optimizer=OptimizerConfig(lr=3e-4, min_lr=3e-5),
        scheduler=SchedulerConfig(lr_decay_style="cosine", lr_warmup_iters=10),
        dataset=GPTDatasetConfig(sequence_length=256, blend=["a", "b"], blend_weights=[1.0, 3.0]),
        tokenizer=TokenizerConfig(tokenizer_type="GPT2BPETokenizer", vocab_file="v.json",
                                  merge_file="m.txt"),
        checkpoint=CheckpointConfig(save="/ckpt", save_interval=50),
        profiling=ProfilingConfig(use_pytorch_profiler=True, profile_ranks=[0, 7]),
        mixed_precision="bf16-mixed",
    )


def _finetune(cfg, packed=False):
    specs = PackedSequenceSpecs(packed_sequence_size=256) if packed else None
    cfg.dataset = FinetuningDatasetConfig(dataset_root="/d", seq_length=256,
                                          packed_sequence_specs=specs)


def _set(path, value):
    def mutate(cfg):
        *parents, name = path.split(".")
        node = cfg
        for part in parents:
            node = getattr(node, part)
        setattr(node, name, value)
    return mutate


def _both(*mutations):
    def mutate(cfg):
        for m in mutations:
            m(cfg)
    return mutate


# (rule, how to break it, the field the error must name)
BREAKERS = [
    ("rule_batch_sizes", _set("model.pipeline_model_parallel_size", 3), "model"),
    ("rule_batch_sizes", _set("train.micro_batch_size", 0), "train.micro_batch_size"),
    ("rule_batch_sizes", _set("train.global_batch_size", 36), "train.global_batch_size"),
    ("rule_train_length", _set("train.train_iters", None), "train.train_iters"),
    ("rule_train_length", _set("train.train_samples", 1000), "train.train_samples"),
    ("rule_train_length", _set("train.eval_interval", 0), "train.eval_interval"),
    ("rule_peft_needs_pretrained", _set("peft", FakePEFT()), "checkpoint.pretrained_checkpoint"),
    ("rule_checkpoint", _both(_set("checkpoint.async_save", True),
                              _set("checkpoint.ckpt_format", "torch")), "checkpoint.async_save"),
    ("rule_checkpoint", _set("checkpoint.save", None), "checkpoint.save"),
    ("rule_checkpoint", _set("checkpoint.save_interval", 0), "checkpoint.save_interval"),
    ("rule_checkpoint", _set("checkpoint.most_recent_k", 0), "checkpoint.most_recent_k"),
    ("rule_sequence_length", _set("dataset", None), "dataset"),
    ("rule_sequence_length", _set("dataset.sequence_length", 512), "dataset.sequence_length"),
    ("rule_sequence_length", _both(_finetune, _set("dataset.seq_length", 128)),
     "dataset.seq_length"),
    ("rule_vocab_size", _both(_set("model.vocab_size", 1000), _set("tokenizer.vocab_size", 1001)),
     "model.vocab_size"),
    ("rule_tokenizer_files", _set("tokenizer.merge_file", None), "tokenizer.merge_file"),
    ("rule_tokenizer_files", _set("tokenizer", TokenizerConfig(
        tokenizer_type="HuggingFaceTokenizer")), "tokenizer.tokenizer_model"),
    ("rule_scheduler", _set("scheduler.lr_warmup_fraction", 0.1), "scheduler.lr_warmup_fraction"),
    ("rule_scheduler", _both(_set("scheduler.lr_warmup_iters", 0),
                             _set("scheduler.lr_warmup_fraction", 1.5)),
     "scheduler.lr_warmup_fraction"),
    ("rule_scheduler", _set("scheduler.lr_warmup_iters", 101), "scheduler.lr_warmup_iters"),
    ("rule_scheduler", _both(_set("scheduler.lr_decay_style", "WSD"),
                             _set("scheduler.lr_wsd_decay_iters", 200)),
     "scheduler.lr_wsd_decay_iters"),
    ("rule_scheduler", _set("optimizer.min_lr", 1e-3), "optimizer.min_lr"),
    ("rule_profiling", _set("profiling.use_nsys_profiler", True),
     "profiling.use_pytorch_profiler"),
    ("rule_profiling", _set("profiling.profile_step_end", 10), "profiling.profile_step_end"),
    ("rule_profiling", _set("profiling.profile_ranks", [8]), "profiling.profile_ranks"),
    ("rule_blend", _set("dataset.blend_weights", [1.0]), "dataset.blend_weights"),
    ("rule_blend", _set("dataset.blend_weights", [1.0, -2.0]), "dataset.blend_weights"),
    ("rule_blend", _set("dataset.blend", None), "dataset.blend_weights"),
    ("rule_blend", _set("dataset.blend_per_split", [["a"], ["b"], None]),
     "dataset.blend_per_split"),
    ("rule_blend", _set("dataset.split", "90,ten"), "dataset.split"),
    ("rule_blend", _set("dataset.split", "0,0,0"), "dataset.split"),
    ("rule_packing", lambda cfg: _finetune(cfg, packed=True), "train.micro_batch_size"),
    ("rule_mixed_precision", _set("mixed_precision", "bf32_mixed"), "mixed_precision"),
    ("rule_logger", _set("logger.log_interval", 0), "logger.log_interval"),
    ("rule_resilience", _set("train.skip_nonfinite_steps", -1), "train.skip_nonfinite_steps"),
    ("rule_resilience", _set("rerun_state_machine.rerun_mode", "report_stats"),
     "rerun_state_machine.rerun_mode"),
    ("rule_resilience", _set("rerun_state_machine.error_injection_rate", 100),
     "rerun_state_machine.error_injection_rate"),
    ("rule_resilience", _both(_set("rerun_state_machine.check_for_spiky_loss", True),
                              _set("rerun_state_machine.spiky_loss_factor", 1.0)),
     "rerun_state_machine.spiky_loss_factor"),
    ("rule_resilience", _set("ft", FaultToleranceConfig(simulate_fault=True)), "ft.simulate_fault"),
    ("rule_resilience", _set("ft", FaultToleranceConfig(hang_timeout_s=0)), "ft.hang_timeout_s"),
    ("rule_resilience", _set("ft", FaultToleranceConfig(initial_hang_timeout_s=-1)),
     "ft.initial_hang_timeout_s"),
    ("rule_resilience", _set("ft", FaultToleranceConfig(step_time_factor=1.0)),
     "ft.step_time_factor"),
]


def test_the_base_config_is_valid():
    valid().validate(world_size=WORLD)


@pytest.mark.parametrize("rule, mutate, field", BREAKERS,
                         ids=[f"{r}-{f}-{i}" for i, (r, _, f) in enumerate(BREAKERS)])
def test_breaking_a_rule_names_the_field(rule, mutate, field):
    cfg = valid()
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        cfg.validate(world_size=WORLD)
    assert field in info.value.fields, str(info.value)
    # The rule named in the table is the one that objects (not a neighbour by accident) ...
    rule_fn = next(r for r in RULES if r.__name__ == rule)
    assert any(f == field for f, _ in rule_fn(cfg, WORLD))
    # ... and each violation is reported on one line.
    assert all("\n" not in message for _, message in info.value.problems)


def test_every_rule_has_a_breaking_test():
    assert {r.__name__ for r in RULES} == {rule for rule, _, _ in BREAKERS}


def test_all_violations_are_reported_together():
    cfg = valid()
    cfg.train.micro_batch_size = 0
    cfg.logger.log_interval = 0
    cfg.dataset.split = "x"
    with pytest.raises(ConfigError) as info:
        cfg.validate(world_size=WORLD)
    assert set(info.value.fields) >= {"train.micro_batch_size", "logger.log_interval",
                                      "dataset.split"}
    assert str(info.value).count("\n") == len(info.value.problems) - 1


def test_world_size_defaults_to_the_environment(monkeypatch):
    cfg = valid()
    cfg.profiling = None
    monkeypatch.setenv("WORLD_SIZE", "6")  # TP=2 -> dp=3, and 32 is not a multiple of 2 x 3
    with pytest.raises(ConfigError, match="train.global_batch_size"):
        cfg.validate()
    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg.validate()


def test_validate_does_not_change_the_config():
    cfg = valid()
    before = copy.deepcopy(cfg)
    cfg.validate(world_size=WORLD)
    assert cfg == before
