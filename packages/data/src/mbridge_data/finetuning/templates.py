"""Turn a fine-tuning record into text segments, each marked as answer (trained) or prompt.

Records are {"input", "output"}, {"prompt", "completion"} or {"messages": [{"role", "content"},
...]}. A prompt/answer record becomes ``prompt_template.format(input=...)`` then the answer; a chat
becomes each message rendered by its role's template, where the text of an assistant message from
``{content}`` on is answer and everything else is prompt. Templates come from
``FinetuningDatasetConfig.dataset_kwargs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PROMPT_TEMPLATE = "{input}\n"
DEFAULT_CHAT_TEMPLATE = {
    "system": "System: {content}\n",
    "user": "User: {content}\n",
    "assistant": "Assistant: {content}\n",
}
PAIRS = (("input", "output"), ("prompt", "completion"))


class RecordError(ValueError):
    """A record does not have a shape we know; the caller adds file:line."""


@dataclass(frozen=True)
class Templates:
    prompt: str = DEFAULT_PROMPT_TEMPLATE
    chat: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CHAT_TEMPLATE))

    def __post_init__(self):
        if "{input}" not in self.prompt:
            raise ValueError(f"prompt_template must contain {{input}}, got {self.prompt!r}")
        for role, template in self.chat.items():
            if template.count("{content}") != 1:
                raise ValueError(f"chat_template[{role!r}] must contain {{content}} once, got "
                                 f"{template!r}")


def segments(record: dict, templates: Templates) -> list[tuple[str, bool]]:
    """[(text, is_answer), ...] for one record."""
    if "messages" in record:
        return _chat(record["messages"], templates.chat)
    for prompt_key, answer_key in PAIRS:
        if prompt_key in record and answer_key in record:
            prompt, answer = record[prompt_key], record[answer_key]
            if not isinstance(prompt, str) or not isinstance(answer, str):
                raise RecordError(f"{prompt_key!r} and {answer_key!r} must be strings")
            try:
                text = templates.prompt.replace("{input}", prompt)
            except Exception as error:  # pragma: no cover - replace cannot fail on strings
                raise RecordError(str(error)) from None
            return [(text, False), (answer, True)]
    raise RecordError('expected {"input", "output"}, {"prompt", "completion"} or '
                      f'{{"messages": [...]}}, got keys {sorted(record)}')


def _chat(messages, chat: dict[str, str]) -> list[tuple[str, bool]]:
    if not isinstance(messages, list) or not messages:
        raise RecordError('"messages" must be a non-empty list of {"role", "content"}')
    out: list[tuple[str, bool]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise RecordError(f"messages[{i}] must be an object with a string 'content'")
        role = message.get("role")
        if role not in chat:
            raise RecordError(f"messages[{i}]: unknown role {role!r}; known: {', '.join(chat)}")
        before, after = chat[role].split("{content}")
        trained = role == "assistant"
        if before:
            out.append((before, False))
        out.append((message["content"], trained))
        if after:
            out.append((after, trained))
    if not any(trained for _, trained in out):
        raise RecordError("a chat needs at least one assistant message to train on")
    return out
