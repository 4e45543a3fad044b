"""The README's main job: pretrain a small GPT on the embedded corpus, then LoRA-fine-tune it on
the embedded instruction set, and show by exact-match accuracy that its answers got better.

Everything goes through the public path a user takes (recipes ``tiny.gpt_small``, ``pretrain``,
a torch_dist checkpoint, ``finetune`` from ``pretrained_checkpoint`` with LoRA), on the CPU when
there is no GPU. Accuracy is measured on the held-out test prompts by greedy decoding, before
the fine-tune (the LoRA model at initialisation is exactly the pretrained one) and after it.
The size follows the device (``SCALES``): the recipe as it is on a CPU, a wider, deeper model
with larger batches on a GPU; ``seed`` varies initialisation and data order, not the data.

    WORK/corpus/   WORK/sft/             the embedded data sets (built once, then reused)
    WORK/runs/pretrain/checkpoints/      pretraining checkpoints (+ loss_curve.png)
    WORK/runs/finetune/checkpoints/      adapter checkpoints (+ loss_curve.png)
    WORK/quickstart.json, WORK/quickstart.png   accuracy per task before/after, and the plots
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mbridge_data.atomic import write_text_atomic
from mbridge_data.corpus.instructions import accuracy_by_task


@dataclass(frozen=True)
class Scale:
    """How big the quickstart runs: ``tiny.gpt_small`` recipe arguments for each stage, and
    model fields (``model.*`` overrides) for both."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        from mbridge_train.recipes.tiny import gpt_small

        model = gpt_small.SmallGPTProvider(**self.model)
        pretrain = self.pretrain.get("train_iters", gpt_small.PRETRAIN.train_iters)
        finetune = self.finetune.get("train_iters", gpt_small.FINETUNE.train_iters)
        return (f"{self.name}: {model.num_layers} layers x {model.hidden_size} wide, "
                f"{pretrain} pretraining + {finetune} LoRA steps")


SCALES = {
    # the recipe as it is: ~10 minutes on two CPU cores
    "cpu": Scale("cpu"),
    # 8 x 512 (25 M parameters), 8x / 4x the batch: 2.5 minutes on one H200, 89-91% exact
    "gpu": Scale("gpu", model={"num_layers": 8, "hidden_size": 512, "ffn_hidden_size": 1408,
                               "num_attention_heads": 8, "num_query_groups": 8},
                 pretrain={"train_iters": 1000, "global_batch_size": 128, "micro_batch_size": 128,
                           "lr": 1e-3, "min_lr": 1e-4},
                 finetune={"train_iters": 750, "global_batch_size": 64, "micro_batch_size": 64,
                           "finetune_lr": 1e-3}),
}


def default_scale() -> Scale:
    import torch

    return SCALES["gpu" if torch.cuda.is_available() else "cpu"]


@dataclass
class QuickstartResult:
    pretrain_losses: list[tuple[int, float]]
    pretrain_validation: list[tuple[int, float]]
    finetune_losses: list[tuple[int, float]]
    accuracy_before: dict[str, float]
    accuracy_after: dict[str, float]
    examples: list[dict] = field(default_factory=list)
    """A few test prompts with the reference and both models' answers."""
    seconds: dict[str, float] = field(default_factory=dict)
    scale: str = ""


def run_quickstart(work_dir: str | Path, pretrain_iters: int | None = None,
                   finetune_iters: int | None = None, say=print,
                   scale: Scale | None = None, seed: int | None = None) -> QuickstartResult:
    """``seed``: initialisation and data order of both stages (the data sets stay the same)."""
    from mbridge_train.recipes.tiny import gpt_small

    scale = scale or default_scale()
    work = Path(work_dir)
    say(f"[quickstart] scale {scale.describe()}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    corpus, sft = _data(work, say)
    timings["data"] = time.perf_counter() - started

    say(f"\n[quickstart] 1/3 pretraining on the corpus ({corpus.tokens:,} tokens)")
    started = time.perf_counter()
    pre_cfg = gpt_small.pretrain_config(
        dir=str(work / "runs"), name="pretrain", data_paths=[corpus.prefix],
        tokenizer_model=corpus.tokenizer_dir,
        **(scale.pretrain | ({"train_iters": pretrain_iters} if pretrain_iters else {})))
    pre_cfg = _with_model(pre_cfg, scale)
    if seed is not None:
        pre_cfg.rng.seed = pre_cfg.dataset.random_seed = seed
    pre_cfg.dataset.split = "98,2,0"
    pre_cfg.dataset.path_to_cache = str(work / "runs" / "pretrain" / "index_cache")
    pretrained = _pretrain(pre_cfg)
    timings["pretrain"] = time.perf_counter() - started

    say("\n[quickstart] 2/3 LoRA fine-tuning on the instruction set")
    started = time.perf_counter()
    ft_cfg = gpt_small.finetune_config(
        dir=str(work / "runs"), name="finetune", dataset_root=str(sft),
        tokenizer_model=corpus.tokenizer_dir,
        pretrained_checkpoint=pre_cfg.checkpoint.save,
        **(scale.finetune | ({"train_iters": finetune_iters} if finetune_iters else {})))
    ft_cfg = _with_model(ft_cfg, scale)
    if seed is not None:
        ft_cfg.rng.seed = ft_cfg.dataset.seed = seed + 1
    test = [json.loads(line) for line in (sft / "test.jsonl").read_text().splitlines()]
    finetuned, before, after = _finetune_and_score(ft_cfg, test, say)
    timings["finetune"] = time.perf_counter() - started

    result = QuickstartResult(
        pretrain_losses=_curve(pretrained.history), pretrain_validation=_curve(
            pretrained.history, "validation"),
        finetune_losses=_curve(finetuned.history),
        accuracy_before=accuracy_by_task(before, test),
        accuracy_after=accuracy_by_task(after, test),
        examples=[{"prompt": r["input"], "reference": r["output"], "before": b, "after": a}
                  for r, b, a in list(zip(test, before, after))[:8]],
        seconds=timings, scale=scale.name)
    _report(work, result, say)
    return result


def _with_model(cfg, scale: Scale):
    """``cfg`` with the scale's model fields, through the overrides a user would write."""
    from mbridge_config.overrides import apply_overrides

    return apply_overrides(cfg, {f"model.{name}": value for name, value in scale.model.items()})


def _data(work: Path, say):
    from mbridge_data.corpus.instructions import write_instructions
    from mbridge_data.corpus.pretraining import build_corpus, load_corpus

    corpus = None
    if (work / "corpus" / "manifest.json").is_file():
        corpus = load_corpus(work / "corpus")
        if not corpus.drills:  # an earlier quickstart's: its model would not learn to copy
            say(f"[quickstart] {corpus.root} was built without drills: building it again")
            corpus = None
    if corpus is None:
        say("[quickstart] building the embedded corpus and its tokenizer (once) ...")
        corpus = build_corpus(work / "corpus")
    return corpus, write_instructions(work / "sft")


def _pretrain(cfg):
    from mbridge_train.gpt_step import forward_step
    from mbridge_train.entry_points import pretrain

    return pretrain(cfg, forward_step)


def _finetune_and_score(cfg, test: list[dict], say):
    """Fine-tune with the answers of the test prompts generated before and after."""
    from mbridge_train.generation import greedy_generate
    from mbridge_train.gpt_step import forward_step
    from mbridge_train.training import setup, teardown, train

    prompts = [_prompt(cfg, r["input"]) for r in test]
    run = setup(cfg, training_mode="finetune")
    try:
        before = greedy_generate(run.model, run.state.tokenizer, prompts)
        say(f"[quickstart] before fine-tuning: {accuracy_by_task(before, test)['all']:.1%} "
            f"of {len(test)} test answers exact")
        train(run, forward_step)
        after = greedy_generate(run.model, run.state.tokenizer, prompts)
    finally:
        teardown()
    return run, before, after


def _prompt(cfg, text: str) -> str:
    """The prompt as the fine-tuning data renders it (the dataset's prompt template)."""
    from mbridge_data.finetuning.dataset import sft_options
    from mbridge_data.finetuning.templates import segments

    templates = sft_options(cfg.dataset.dataset_kwargs)["templates"]
    (prompt, _), _answer = segments({"input": text, "output": ""}, templates)
    return prompt


def _curve(history: list[dict], split: str | None = None) -> list[tuple[int, float]]:
    from mbridge_train.loss_contract import LM_LOSS

    return [(h["step"], h[LM_LOSS]) for h in history
            if h.get("split") == split and LM_LOSS in h]


def _report(work: Path, result: QuickstartResult, say) -> None:
    before, after = result.accuracy_before, result.accuracy_after
    lines = ["", "[quickstart] 3/3 exact-match accuracy on the held-out test prompts",
             f"  {'task':<10} {'before':>7} {'after':>7}"]
    for task in sorted(after, key=lambda t: (t == "all", t)):
        lines.append(f"  {task:<10} {before.get(task, 0):>7.1%} {after[task]:>7.1%}")
    lines.append("  examples (prompt -> reference | before | after):")
    for e in result.examples[:5]:
        lines.append(f"    {e['prompt']!r} -> {e['reference']!r} | {e['before'].strip()!r} | "
                     f"{e['after'].strip()!r}")
    write_text_atomic(work / "quickstart.json", json.dumps(asdict(result), indent=2) + "\n")
    plot = _plot(work / "quickstart.png", result)
    lines.append(f"  written: {work / 'quickstart.json'}" + (f", {plot}" if plot else ""))
    lines += _next_steps(work)
    say("\n".join(lines))


def _next_steps(work: Path) -> list[str]:
    sft, runs, corpus = work / "sft", work / "runs", work / "corpus"
    return [
        f"  checkpoints: {runs / 'pretrain' / 'checkpoints'} (pretrained), "
        f"{runs / 'finetune' / 'checkpoints'} (adapters); loss curves beside them",
        "  next:",
        f"    the same stages by hand: mbridge pretrain tiny.gpt_small -a dir={runs} "
        f"-a data_paths='[{corpus / 'corpus_text_document'}]' "
        f"-a tokenizer_model={corpus / 'tokenizer'}",
        f"      then: mbridge finetune tiny.gpt_small -a dir={runs} -a dataset_root={sft} "
        f"-a tokenizer_model={corpus / 'tokenizer'} "
        f"-a pretrained_checkpoint={runs / 'gpt_small' / 'checkpoints'}",
        "    the recipes of published models: mbridge recipes; any run's full config as YAML: "
        "add --dry-run, edit it, run it with --config-file FILE",
        "    the Python API: examples/pretrain_then_lora.py (recipes, pretrain(), finetune())",
    ]


def _plot(path: Path, result: QuickstartResult) -> Path | None:
    """Pretraining loss, fine-tuning loss, and accuracy per task before/after, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (pre, ft, acc) = plt.subplots(1, 3, figsize=(15, 4.2))
    for axis, curve, title in ((pre, result.pretrain_losses, "pretraining (corpus)"),
                               (ft, result.finetune_losses, "LoRA fine-tuning (answers)")):
        if curve:
            axis.plot(*zip(*curve), label="train")
        axis.set(title=title, xlabel="step", ylabel="lm loss")
    if result.pretrain_validation:
        pre.plot(*zip(*result.pretrain_validation), "o", label="validation")
    pre.legend()
    tasks = sorted(result.accuracy_after, key=lambda t: (t == "all", t))
    xs = range(len(tasks))
    acc.bar([x - 0.2 for x in xs], [result.accuracy_before.get(t, 0) for t in tasks], 0.4,
            label="before")
    acc.bar([x + 0.2 for x in xs], [result.accuracy_after[t] for t in tasks], 0.4, label="after")
    acc.set_xticks(list(xs), tasks, rotation=45, ha="right")
    acc.set(title="exact-match accuracy, held-out test prompts", ylim=(0, 1))
    acc.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
