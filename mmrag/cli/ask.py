"""ask: a grounded answer from a collection, streamed, with its sources; a dry run without an endpoint."""

from __future__ import annotations

import argparse
import json
import re
import sys

from .exits import EXIT_OK
from .output import warn_models

DATA_URL = re.compile(r"(data:image/[\w.+-]+;base64,)([A-Za-z0-9+/=]{80,})")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ask",
        help="answer a question from a collection with a language model, citing sources [n]",
        description="Retrieve the top-k items for QUESTION, send them as numbered context to an "
        "OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server) and stream "
        "the answer. Without an endpoint it prints the context and the exact request it would send. "
        "Endpoint: MMRAG_LLM_BASE_URL, MMRAG_LLM_MODEL, MMRAG_LLM_API_KEY (or OPENAI_API_KEY / "
        "OPENAI_BASE_URL), or a TOML file (--llm-config or MMRAG_LLM_CONFIG). See docs/rag.md.",
    )
    p.add_argument("question", help="the question, in plain language")
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")
    p.add_argument("-k", type=int, default=8, help="items to retrieve (default 8)")
    p.add_argument("-m", "--modalities", default=None, help="comma list of image,code,text (default: all)")
    p.add_argument("--model", default=None, help="model name (overrides MMRAG_LLM_MODEL)")
    p.add_argument("--base-url", default=None, help="endpoint base, e.g. http://localhost:11434/v1")
    p.add_argument(
        "--llm-config", default=None, metavar="TOML", help="file with base_url, model, api_key, ..."
    )
    p.add_argument(
        "--budget", type=int, default=None, metavar="TOKENS", help="prompt size limit (default 6000)"
    )
    p.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="per-read timeout (default 120)"
    )
    p.add_argument(
        "--vision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send images as image parts (vision models only; default off or MMRAG_LLM_VISION)",
    )
    p.add_argument("--no-stream", action="store_true", help="ask for the answer in one piece")
    p.add_argument("--dry-run", action="store_true", help="print context and request; call nothing")
    p.add_argument("--json", action="store_true", help="print the answer and citations as JSON at the end")
    p.set_defaults(run=run_ask)


def run_ask(args: argparse.Namespace) -> int:
    from mmrag.api import Engine
    from mmrag.rag import DEFAULT_BUDGET, LLMCfg, generate, retrieve

    cfg = LLMCfg.load(
        args.llm_config,
        model=args.model,
        base_url=args.base_url,
        timeout=args.timeout,
        vision=args.vision,
        stream=False if args.no_stream else None,
    )
    modalities = (
        tuple(m.strip() for m in args.modalities.split(",") if m.strip()) if args.modalities else None
    )
    with Engine.open(args.collection) as eng:
        warn_models(eng.models.set)
        hits = retrieve(eng, args.question, k=args.k, modalities=modalities)
    answer = None
    streamed = False
    for event in generate(
        args.question, hits, cfg=cfg, budget_tokens=args.budget or DEFAULT_BUDGET, dry_run=args.dry_run
    ):
        if isinstance(event, str):
            if not args.json:
                sys.stdout.write(event)
                sys.stdout.flush()
                streamed = True
        else:
            answer = event
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=1))
    elif answer.dry_run:
        print_dry_run(answer)
    else:
        if streamed and not answer.text.endswith("\n"):
            print()
        print_sources(answer)
    return EXIT_OK


def print_sources(answer) -> None:
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            print(f"  [{c.n}] {c.location}{_label(c.hit)}  ({c.hit.modality}, id {c.hit.id})")
    else:
        print("\n(no sources cited)")
    if answer.finish_reason == "length":
        print("mmrag: warning: the answer was cut at the model's max_tokens", file=sys.stderr)


def print_dry_run(answer) -> None:
    """The context as the model would see it, then the exact request body."""
    print(f"# Retrieved context: {len(answer.context)} items", end="")
    print(f" ({len(answer.left_out)} more left out by the token budget)" if answer.left_out else "")
    for c in answer.context:
        print(f"  [{c.n}] {c.location}{_label(c.hit)}  ({c.hit.modality}, score {c.hit.score:.4f})")
    if answer.context:
        print("\n# Context as the model would see it")
        print(answer.context_text)
    print(f"\n# Request that would be sent: POST {answer.endpoint}")
    body = json.dumps(answer.request, ensure_ascii=False, indent=1)
    print(DATA_URL.sub(lambda m: f"{m.group(1)}<{len(m.group(2))} base64 chars>", body))
    print(f"\n# {answer.note}", file=sys.stderr)


def _label(hit) -> str:
    label = hit.symbol or hit.title
    return f" {label}" if label else ""
