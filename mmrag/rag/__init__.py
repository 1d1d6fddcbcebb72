"""Retrieval-augmented answers: numbered context from a collection, an OpenAI-compatible model, citations."""

from __future__ import annotations

from .answer import (
    DEFAULT_BUDGET,
    DEFAULT_K,
    Answer,
    Citation,
    ask,
    ask_stream,
    cite,
    cited_numbers,
    generate,
    request_body,
    retrieve,
)
from .client import (
    ChatClient,
    ChatResult,
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMNotConfiguredError,
    LLMNotFoundError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
)
from .config import HOW_TO_CONFIGURE, LLMCfg
from .prompt import SYSTEM_PROMPT, ContextBlock, Prompt, PromptCfg, build_prompt, estimate_tokens, location

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_K",
    "HOW_TO_CONFIGURE",
    "SYSTEM_PROMPT",
    "Answer",
    "ChatClient",
    "ChatResult",
    "Citation",
    "ContextBlock",
    "LLMAuthError",
    "LLMCfg",
    "LLMConnectionError",
    "LLMError",
    "LLMNotConfiguredError",
    "LLMNotFoundError",
    "LLMRateLimitError",
    "LLMServerError",
    "LLMTimeoutError",
    "Prompt",
    "PromptCfg",
    "ask",
    "ask_stream",
    "build_prompt",
    "cite",
    "cited_numbers",
    "estimate_tokens",
    "generate",
    "location",
    "request_body",
    "retrieve",
]
