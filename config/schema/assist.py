"""`assist:` — agent assist: suggestions from resolved cases, the knowledge base, and an
optional language model. Retrieval runs on the node and is on by default; the model is
off until a site configures one (see docs/assist.md for what leaves the node)."""

from __future__ import annotations

from pydantic import Field, field_validator

from config.schema.base import Strict


class AssistModel(Strict):
    """An OpenAI-compatible chat-completions endpoint (a hosted provider, Ollama, vLLM,
    llama.cpp's server). The API key is read from the environment variable named here,
    never from the config file, so the config can be reviewed and versioned."""

    enabled: bool = False
    base_url: str = "http://127.0.0.1:11434/v1"  # .../v1; `/chat/completions` is appended
    model: str = Field("llama3.1", min_length=1, max_length=200)
    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")
    stream: bool = True
    timeout_seconds: float = Field(8.0, gt=0, le=120)
    max_tokens: int = Field(400, ge=16, le=8192)
    temperature: float = Field(0.2, ge=0, le=2)
    # Phone numbers, e-mail addresses and IBANs are replaced by placeholders in every
    # text sent to the model.
    mask_personal_data: bool = True
    # How many retrieved cases and articles the prompt carries.
    context_items: int = Field(4, ge=1, le=10)
    # After a failure the model is not asked again for this long: agents get the
    # retrieval suggestions at once instead of waiting for a timeout on every request.
    cooldown_seconds: float = Field(30.0, ge=0, le=3600)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")


class AssistSettings(Strict):
    enabled: bool = True
    knowledge_dir: str = "knowledge"  # Markdown articles, relative to the config directory
    suggestions: int = Field(3, ge=1, le=10)  # replies shown beside the conversation
    articles: int = Field(3, ge=1, le=10)  # knowledge-base matches shown
    # How many of the customer's latest messages make the query.
    query_messages: int = Field(3, ge=1, le=20)
    # New resolved cases become searchable in batches, at most this long after closing.
    commit_interval_seconds: float = Field(0.5, gt=0, le=60)
    model: AssistModel = AssistModel()
