"""The embedded pretraining corpus: stdlib English text and the drills (``corpus.drills``) ->
corpus.jsonl, a byte-level BPE tokenizer trained on it, and the tokenized megatron-core dataset,
all in one directory.

    OUT/corpus.jsonl                     one {"text": ...} per document
    OUT/tokenizer/tokenizer.json         byte-level BPE (+ tokenizer_config.json)
    OUT/corpus_text_document.{bin,idx}   blend prefix: OUT/corpus_text_document
    OUT/manifest.json                    counts and the Python version the text came from

Deterministic for a given Python installation; about a minute on two cores.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from mbridge_data.atomic import write_text_atomic
from mbridge_data.corpus.bpe import save_tokenizer, train_byte_level_bpe
from mbridge_data.corpus.stdlib_text import documents

PREFIX_NAME = "corpus_text_document"


@dataclass(frozen=True)
class Corpus:
    root: str
    documents: int
    characters: int
    tokens: int
    vocab_size: int
    python: str
    drills: int = 0
    """Drill documents mixed in (0 in manifests written before there were drills)."""

    @property
    def prefix(self) -> str:
        """The ``GPTDatasetConfig.blend`` entry."""
        return str(Path(self.root) / PREFIX_NAME)

    @property
    def tokenizer_dir(self) -> str:
        """The ``TokenizerConfig.tokenizer_model`` (HuggingFaceTokenizer)."""
        return str(Path(self.root) / "tokenizer")


def build_corpus(out_dir: str | Path, vocab_size: int = 2048, workers: int = 2,
                 progress: bool | None = None, drills: int = 12000) -> Corpus:
    """``vocab_size``: 2048 makes the drill words and digits single tokens all the same, and a
    small output layer is most of what makes a small model's CPU step cheap."""
    from mbridge_data.preprocess import preprocess
    from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = documents(workers=workers) + _drills(drills)
    lines = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
    write_text_atomic(out / "corpus.jsonl", lines)
    save_tokenizer(train_byte_level_bpe(docs, vocab_size=vocab_size), out / "tokenizer")
    tokenizer = HuggingFaceTokenizer(str(out / "tokenizer"))
    result = preprocess(out / "corpus.jsonl", out / PREFIX_NAME, tokenizer, workers=workers,
                        progress=progress)
    corpus = Corpus(str(out), len(docs), sum(map(len, docs)), result.tokens,
                    tokenizer.vocab_size, platform.python_version(), drills)
    write_text_atomic(out / "manifest.json", json.dumps(asdict(corpus), indent=2) + "\n")
    return corpus


def _drills(count: int) -> list[str]:
    """The drills, holding out what the embedded instruction set's held-out prompts ask."""
    from mbridge_data.corpus.drills import drill_documents, held_out_contents
    from mbridge_data.corpus.instructions import generate

    split = generate()
    return drill_documents(count, exclude=held_out_contents(split["validation"] + split["test"]))


def load_corpus(out_dir: str | Path) -> Corpus:
    """The corpus built earlier in ``out_dir`` (see ``build_corpus``)."""
    manifest = Path(out_dir) / "manifest.json"
    if not manifest.is_file():
        from mbridge_data.errors import DataError

        raise DataError(f"{manifest}: not found; build the corpus with `mbridge data corpus "
                        f"{out_dir}`")
    return Corpus(**json.loads(manifest.read_text()))
