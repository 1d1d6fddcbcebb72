"""Where the language model lives: an OpenAI-compatible endpoint named by env vars or a TOML file.

Precedence, highest first: explicit overrides (CLI flags), MMRAG_LLM_* env vars, OPENAI_* env vars,
the TOML file (MMRAG_LLM_CONFIG or an explicit path), the defaults below.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmrag.errors import ConfigError

OPENAI_BASE_URL = "https://api.openai.com/v1"

# env var -> LLMCfg field, MMRAG_* first so that it wins over OPENAI_*
ENV_VARS: tuple[tuple[str, str], ...] = (
    ("MMRAG_LLM_BASE_URL", "base_url"),
    ("MMRAG_LLM_MODEL", "model"),
    ("MMRAG_LLM_API_KEY", "api_key"),
    ("MMRAG_LLM_TIMEOUT", "timeout"),
    ("MMRAG_LLM_MAX_RETRIES", "max_retries"),
    ("MMRAG_LLM_VISION", "vision"),
    ("MMRAG_LLM_MAX_TOKENS", "max_tokens"),
    ("MMRAG_LLM_TEMPERATURE", "temperature"),
    ("OPENAI_BASE_URL", "base_url"),
    ("OPENAI_API_KEY", "api_key"),
)
CONFIG_ENV = "MMRAG_LLM_CONFIG"
HOW_TO_CONFIGURE = (
    "set MMRAG_LLM_BASE_URL (e.g. http://localhost:11434/v1 for Ollama, http://localhost:8000/v1 for vLLM, "
    "http://localhost:8080/v1 for llama.cpp server) and MMRAG_LLM_MODEL, plus MMRAG_LLM_API_KEY if the server "
    "needs one; or OPENAI_API_KEY and MMRAG_LLM_MODEL for OpenAI; or a TOML file named by MMRAG_LLM_CONFIG "
    "with base_url, model, api_key (see docs/rag.md)"
)


@dataclass(frozen=True)
class LLMCfg:
    """An OpenAI-compatible chat-completions endpoint and how patiently to talk to it."""

    base_url: str | None = None  # ends in /v1 for every server named in docs/rag.md
    model: str | None = None
    api_key: str | None = None  # local servers usually need none
    timeout: float = 120.0  # seconds to connect and between streamed chunks: CPU models are slow to start
    max_retries: int = 3  # on 429, 5xx, timeouts and refused connections; 4 tries in all
    backoff: float = 1.0  # first retry waits this long (plus jitter), doubling each time
    max_backoff: float = 30.0  # longest single wait; a Retry-After beyond it fails at once instead
    vision: bool = False  # send images as image_url parts: only vision models accept them
    temperature: float | None = 0.2  # low: answers should restate the context, not invent
    max_tokens: int | None = None  # None lets the server decide
    stream: bool = True

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ConfigError(f"LLM timeout must be positive seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"LLM max_retries must be >= 0, got {self.max_retries}")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM base_url must start with http:// or https://, got {self.base_url!r}")

    @property
    def configured(self) -> bool:
        """True when there is an endpoint to call; otherwise `ask` makes a dry run."""
        return bool(self.base_url)

    @property
    def endpoint(self) -> str:
        base = (self.base_url or "<MMRAG_LLM_BASE_URL>").rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def replace(self, **changes: Any) -> LLMCfg:
        """A copy with the non-None `changes` applied (CLI flags left unset change nothing)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def public(self) -> dict[str, Any]:
        """The settings without the secret, for logs and dry runs."""
        d = dataclasses.asdict(self)
        d["api_key"] = "***" if self.api_key else None
        return d

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> LLMCfg:
        """Defaults < TOML file < env < overrides; OpenAI's URL when only OPENAI_API_KEY is given."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = path or env.get(CONFIG_ENV) or None
        if path:
            values.update(read_toml(path))
        values.update(from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("base_url") and env.get("OPENAI_API_KEY") and values.get("api_key"):
            values["base_url"] = OPENAI_BASE_URL
        return cls(**_coerce(values, source="settings"))


def url_setting(base_url: str | None, env: Mapping[str, str] | None = None) -> str:
    """The setting that put `base_url` there, for messages on what to change: with only OPENAI_API_KEY
    set it is OpenAI's own URL, and MMRAG_LLM_BASE_URL was never the user's."""
    env = os.environ if env is None else env
    url = (base_url or "").rstrip("/")
    for var in ("MMRAG_LLM_BASE_URL", "OPENAI_BASE_URL"):
        if env.get(var, "").strip().rstrip("/") == url:
            return var
    if url == OPENAI_BASE_URL and env.get("OPENAI_API_KEY"):
        return "OPENAI_API_KEY"
    return f"the base URL (--base-url, or {CONFIG_ENV}'s file)"


def url_hint(base_url: str | None, env: Mapping[str, str] | None = None) -> str:
    """What to check when `base_url` does not answer."""
    setting = url_setting(base_url, env)
    if setting == "OPENAI_API_KEY":
        return (
            "that is OpenAI's API, used because OPENAI_API_KEY is set and no base URL is: is this machine "
            "online? For another server set MMRAG_LLM_BASE_URL (e.g. http://localhost:11434/v1 for Ollama)"
        )
    return f"is the server running, and is {setting} right?"


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, name in ENV_VARS:
        value = env.get(var, "").strip()
        if value and name not in out:
            out[name] = value
    return _coerce(out, source="environment")


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Top-level keys or an [llm] table; unknown keys are an error naming the valid ones."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"LLM config file {str(path)!r} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"LLM config file {str(path)!r} is not valid TOML: {e}") from e
    table = data.get("llm", data)
    if not isinstance(table, dict):
        raise ConfigError(f"LLM config file {str(path)!r}: [llm] must be a table")
    return _coerce(table, source=str(path))


_FIELDS = {f.name: f for f in dataclasses.fields(LLMCfg)}
_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _coerce(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Strings from env or TOML to each field's type; the message names the bad key and value."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise ConfigError(f"Unknown LLM setting {key!r} in {source}; valid: {sorted(_FIELDS)}")
        kind = str(_FIELDS[key].type)
        try:
            if value is None or not isinstance(value, str):
                out[key] = value
            elif kind.startswith("bool"):
                out[key] = _BOOL[value.strip().lower()]
            elif kind.startswith("float"):
                out[key] = float(value)
            elif kind.startswith("int"):
                out[key] = int(value)
            else:
                out[key] = value
        except (KeyError, ValueError) as e:
            raise ConfigError(f"LLM setting {key}={value!r} in {source} is not a valid {kind}") from e
    return out
