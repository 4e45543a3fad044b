"""Hypothesis strategies: random *valid* ConfigContainers, with the world size they assume."""

import signal

import torch
from fake_provider import FakeModelProvider, FakePEFT
from hypothesis import strategies as st

from mbridge_config import (
    CheckpointConfig,
    CommOverlapConfig,
    ConfigContainer,
    DistributedInitConfig,
    FinetuningDatasetConfig,
    GPTDatasetConfig,
    LoggerConfig,
    MockGPTDatasetConfig,
    OptimizerConfig,
    PackedSequenceSpecs,
    ProfilingConfig,
    RNGConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainingConfig,
)
from mbridge_config.mixed_precision import PRESETS

texts = st.text(min_size=1, max_size=12)
paths = st.builds(lambda parts: "/" + "/".join(parts),
                  st.lists(st.text("abcxyz_-.0123é中", min_size=1, max_size=6),
                           min_size=1, max_size=3))
dtypes = st.sampled_from([torch.float32, torch.bfloat16, torch.float16])
preset_spellings = st.sampled_from(sorted(PRESETS)).flatmap(
    lambda name: st.sampled_from([name, name.replace("_", "-"), name.upper()]))


@st.composite
def valid_containers(draw):
    tp, pp = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2, 4]))
    dp = draw(st.integers(1, 4))
    world = tp * pp * dp
    seq = draw(st.sampled_from([64, 128, 2048, 8192]))
    dataset_kind = draw(st.sampled_from(["gpt", "mock", "finetune", "packed"]))
    mbs = 1 if dataset_kind == "packed" else draw(st.integers(1, 4))
    iters = draw(st.integers(10, 10**6))

    model = FakeModelProvider(
        seq_length=seq, vocab_size=draw(st.none() | st.integers(256, 300_000)),
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
        sequence_parallel=draw(st.booleans()), params_dtype=draw(dtypes),
    )
    train = TrainingConfig(
        train_iters=iters, micro_batch_size=mbs,
        global_batch_size=mbs * dp * draw(st.integers(1, 16)),
        eval_interval=draw(st.none() | st.integers(1, 5000)), eval_iters=draw(st.integers(0, 200)),
        exit_signal_handler=draw(st.booleans()),
        exit_signal=draw(st.sampled_from([signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])),
        manual_gc=draw(st.booleans()), manual_gc_interval=draw(st.integers(0, 100)),
        check_weight_hash_across_dp_replicas_interval=draw(st.none() | st.integers(1, 1000)),
        exit_duration_in_mins=draw(st.none() | st.integers(1, 10_000)),
    )
    lr = draw(st.floats(1e-6, 1e-2))
    optimizer = OptimizerConfig(
        optimizer=draw(st.sampled_from(["adam", "sgd"])), lr=lr,
        min_lr=lr * draw(st.floats(0.0, 1.0)), weight_decay=draw(st.floats(0.0, 0.3)),
        adam_beta2=draw(st.floats(0.9, 0.999)), clip_grad=draw(st.floats(0.0, 10.0)),
        use_distributed_optimizer=draw(st.booleans()), params_dtype=draw(dtypes),
    )
    warmup = draw(st.integers(0, iters - 1))  # megatron's scheduler needs warm-up < decay
    scheduler = SchedulerConfig(
        lr_decay_style=draw(st.sampled_from(["constant", "linear", "cosine",
                                             "inverse-square-root", "WSD"])),
        lr_warmup_iters=warmup, lr_decay_iters=draw(st.none() | st.integers(warmup + 1, 2 * iters)),
        start_weight_decay=draw(st.none() | st.floats(0, 0.1)),
        weight_decay_incr_style=draw(st.sampled_from(["constant", "linear", "cosine"])),
    )
    if dataset_kind == "gpt":
        blend = draw(st.lists(paths, min_size=1, max_size=4))
        weights = draw(st.none() | st.lists(st.floats(0.01, 100), min_size=len(blend),
                                            max_size=len(blend)))
        dataset = GPTDatasetConfig(
            sequence_length=seq, blend=blend, blend_weights=weights,
            split=draw(st.sampled_from(["949,50,1", "98,2,0", "1", "90,10"])),
            num_workers=draw(st.integers(0, 8)), pin_memory=draw(st.booleans()),
            path_to_cache=draw(st.none() | paths), random_seed=draw(st.integers(0, 2**31)),
        )
    elif dataset_kind == "mock":
        dataset = MockGPTDatasetConfig(sequence_length=seq, num_workers=draw(st.integers(0, 4)))
    else:
        specs = PackedSequenceSpecs(packed_sequence_size=seq,
                                    tokenizer_model_name=draw(st.none() | texts),
                                    pad_cu_seqlens=draw(st.booleans()))
        dataset = FinetuningDatasetConfig(
            dataset_root=draw(paths), seq_length=seq, do_validation=draw(st.booleans()),
            do_test=draw(st.booleans()), persistent_workers=draw(st.booleans()),
            packed_sequence_specs=specs if dataset_kind == "packed" else None,
            dataset_kwargs=draw(st.none() | st.dictionaries(
                st.sampled_from(["prompt_template", "truncation_field", "label_key"]), texts)),
        )
    tokenizer = draw(st.sampled_from([
        None,
        TokenizerConfig(tokenizer_type="GPT2BPETokenizer", vocab_file="/v.json",
                        merge_file="/m.txt"),
        TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model="/tok"),
        TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=256),
    ]))
    if tokenizer is not None and tokenizer.vocab_size is not None and model.vocab_size is not None:
        model.vocab_size = max(model.vocab_size, tokenizer.vocab_size)
    save = draw(st.none() | paths)
    fmt = draw(st.sampled_from(["torch_dist", "torch"]))
    peft = draw(st.none() | st.builds(FakePEFT, dim=st.integers(1, 64)))
    checkpoint = CheckpointConfig(
        save=save, save_interval=draw(st.integers(1, 1000)) if save else None,
        load=draw(st.none() | paths), most_recent_k=draw(st.sampled_from([-1, 1, 3])),
        ckpt_format=fmt, async_save=fmt == "torch_dist" and draw(st.booleans()),
        fully_parallel_save=draw(st.booleans()), fully_parallel_load=draw(st.booleans()),
        save_optim=draw(st.booleans()), load_optim=draw(st.booleans()),
        pretrained_checkpoint=draw(paths) if peft is not None else draw(st.none() | paths),
        dist_ckpt_strictness=draw(st.sampled_from(["assume_ok_unexpected", "log_all",
                                                   "raise_all"])),
    )
    logger = LoggerConfig(
        log_interval=draw(st.integers(1, 100)), log_throughput=draw(st.booleans()),
        tensorboard_dir=draw(st.none() | paths), wandb_project=draw(st.none() | texts),
        wandb_exp_name=draw(st.none() | texts),
    )
    start = draw(st.integers(0, 100))
    profiling = draw(st.none() | st.builds(
        ProfilingConfig, use_pytorch_profiler=st.just(True), profile_step_start=st.just(start),
        profile_step_end=st.integers(start + 1, start + 50),
        profile_ranks=st.lists(st.integers(0, world - 1), max_size=3, unique=True),
        record_memory_history=st.booleans(), record_shapes=st.booleans()))
    overlap = draw(st.none() | st.builds(CommOverlapConfig, overlap_grad_reduce=st.booleans(),
                                         bucket_size=st.none() | st.integers(1, 10**8)))
    mixed = draw(st.none() | preset_spellings | preset_spellings.map(
        lambda n: PRESETS[n.lower().replace("-", "_")]()))
    return world, ConfigContainer(
        model=model, train=train, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
        tokenizer=tokenizer, checkpoint=checkpoint, logger=logger, profiling=profiling,
        peft=peft, comm_overlap=overlap, mixed_precision=mixed,
        rng=RNGConfig(seed=draw(st.integers(0, 2**31))),
        dist=DistributedInitConfig(distributed_backend=draw(st.sampled_from(["nccl", "gloo"])),
                                   lazy_init=draw(st.booleans())),
    )
