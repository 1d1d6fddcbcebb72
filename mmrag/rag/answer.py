"""Grounded answers: retrieve, assemble the prompt, call the model, map [n] markers to hits.

from mmrag import Engine
from mmrag.rag import LLMCfg, ask_stream
with Engine.open("my.coll") as eng:
    for event in ask_stream(eng, "how do I add two numbers?", cfg=LLMCfg.load()):
        print(event, end="") if isinstance(event, str) else print(event.citations)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmrag.items import Hit

from .client import ChatClient, ChatResult, LLMServerError
from .config import HOW_TO_CONFIGURE, LLMCfg
from .prompt import Prompt, PromptCfg, build_prompt, location

DEFAULT_K = 8  # items retrieved: enough to cover a question, few enough to fit small context windows
DEFAULT_BUDGET = PromptCfg.budget_tokens

_MARKER = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)


@dataclass(frozen=True)
class Citation:
    """One context item by its number in the prompt: what [n] in the answer points to."""

    n: int
    hit: Hit

    @property
    def location(self) -> str:
        return location(self.hit)

    def to_dict(self) -> dict[str, Any]:
        h = self.hit
        return {
            "n": self.n,
            "id": h.id,
            "key": h.key,
            "modality": h.modality,
            "source": h.source,
            "path": h.path,
            "location": self.location,
            "title": h.title,
            "symbol": h.symbol,
            "start_line": h.start_line,
            "end_line": h.end_line,
            "score": h.score,
        }


@dataclass
class Answer:
    """The model's answer with the items it cited; a dry run has no text and says so."""

    question: str
    text: str
    citations: list[Citation]  # the items the answer cites, in order of first mention
    context: list[Citation]  # every item sent, numbered as in the prompt
    request: dict[str, Any]  # the exact chat-completions body sent (or, in a dry run, that would be)
    endpoint: str
    dry_run: bool = False
    model: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    left_out: list[Hit] = field(default_factory=list)  # retrieved but over the token budget
    note: str = ""  # for a dry run: how to configure an endpoint
    context_text: str = ""  # the delimited context blocks as sent, for display

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "context": [c.to_dict() for c in self.context],
            "dry_run": self.dry_run,
            "model": self.model,
            "endpoint": self.endpoint,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "left_out": [h.id for h in self.left_out],
            "note": self.note,
            "context_text": self.context_text,
            "request": self.request if self.dry_run else None,  # large with images: only to show a dry run
        }


def cited_numbers(text: str) -> list[int]:
    """The numbers in [n] and [n, m] markers, in order of first mention; code spans are skipped."""
    seen: dict[int, None] = {}
    for m in _MARKER.finditer(_CODE.sub(" ", text)):
        for part in re.split(r"[,;]", m.group(1)):
            seen.setdefault(int(part), None)
    return list(seen)


def cite(text: str, prompt: Prompt) -> list[Citation]:
    """Map each [n] in the answer to its hit; numbers that name no context item are ignored."""
    hits = prompt.by_number()
    return [Citation(n, hits[n]) for n in cited_numbers(text) if n in hits]


def request_body(prompt: Prompt, cfg: LLMCfg) -> dict[str, Any]:
    """The chat-completions body: only fields every OpenAI-compatible server accepts."""
    body: dict[str, Any] = {"model": cfg.model or "<MMRAG_LLM_MODEL>", "messages": prompt.messages}
    if cfg.temperature is not None:
        body["temperature"] = cfg.temperature
    if cfg.max_tokens is not None:
        body["max_tokens"] = cfg.max_tokens
    body["stream"] = cfg.stream
    return body


def retrieve(engine, question: str, *, k: int = DEFAULT_K, **search_options: Any) -> list[Hit]:
    """Top-k across modalities (or those named in `modalities=`), ranked by the engine."""
    return engine.search(question, k=k, **search_options).hits


def generate(
    question: str,
    hits: Sequence[Hit],
    *,
    cfg: LLMCfg,
    budget_tokens: int = DEFAULT_BUDGET,
    client: ChatClient | None = None,
    prompt_cfg: PromptCfg | None = None,
    dry_run: bool = False,
) -> Iterator[str | Answer]:
    """Yield the answer's text deltas as they arrive, then the final Answer with citations.

    With dry_run, or without an endpoint (cfg.configured false), nothing is called: the only event
    is a dry-run Answer carrying the context and the exact request that would be sent.
    """
    pcfg = prompt_cfg or PromptCfg(budget_tokens=budget_tokens, vision=cfg.vision)
    prompt = build_prompt(question, hits, pcfg)
    body = request_body(prompt, cfg)
    context = [Citation(b.n, b.hit) for b in prompt.blocks]
    base = dict(
        question=question,
        context=context,
        request=body,
        endpoint=cfg.endpoint,
        left_out=prompt.left_out,
        context_text=prompt.context_text(),
    )
    if dry_run or not cfg.configured:
        note = (
            f"Dry run: nothing was sent to {cfg.endpoint}."
            if cfg.configured
            else f"Dry run, no language model endpoint configured: {HOW_TO_CONFIGURE}."
        )
        yield Answer(text="", citations=[], dry_run=True, note=note, **base)
        return
    client = client or ChatClient(cfg)
    if cfg.stream:
        result: ChatResult | None = None
        for event in client.stream(body):
            if isinstance(event, str):
                yield event
            else:
                result = event
        if result is None:  # stream() always ends with its ChatResult
            raise LLMServerError(f"{cfg.endpoint} stream ended without a result", cfg.endpoint)
    else:
        result = client.complete(body)
        if result.text:
            yield result.text
    yield Answer(
        text=result.text,
        citations=cite(result.text, prompt),
        model=result.model or cfg.model,
        finish_reason=result.finish_reason,
        usage=result.usage,
        **base,
    )


def ask_stream(
    engine,
    question: str,
    *,
    k: int = DEFAULT_K,
    cfg: LLMCfg | None = None,
    budget_tokens: int = DEFAULT_BUDGET,
    client: ChatClient | None = None,
    **search_options: Any,
) -> Iterator[str | Answer]:
    """Retrieve then generate: text deltas (str), then one Answer. `search_options` go to engine.search."""
    cfg = cfg if cfg is not None else LLMCfg.load()
    hits = retrieve(engine, question, k=k, **search_options)
    yield from generate(question, hits, cfg=cfg, budget_tokens=budget_tokens, client=client)


def ask(
    engine,
    question: str,
    *,
    k: int = DEFAULT_K,
    cfg: LLMCfg | None = None,
    budget_tokens: int = DEFAULT_BUDGET,
    on_delta: Callable[[str], None] | None = None,
    **search_options: Any,
) -> Answer:
    """The whole answer at once (a dry run without an endpoint); `on_delta` sees text as it streams."""
    answer = None
    for event in ask_stream(engine, question, k=k, cfg=cfg, budget_tokens=budget_tokens, **search_options):
        if isinstance(event, str):
            if on_delta:
                on_delta(event)
        else:
            answer = event
    if answer is None:  # generate() always ends with its Answer
        raise LLMServerError(f"{cfg.endpoint if cfg else 'the endpoint'} gave no answer")
    return answer
