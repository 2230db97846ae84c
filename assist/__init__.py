"""Agent assist: reply suggestions from resolved cases and the knowledge base, case
summaries, and an optional language model behind the ChatModel port (docs/assist.md).

A domain package: it reads cases through CaseService and events, never sends anything
to a customer, and never learns whether a model exists except through the port.
"""

from assist.ports import ChatModel, ModelUnavailable
from assist.service import AssistService, Suggestions
from assist.summary import CaseSummary

__all__ = ["AssistService", "CaseSummary", "ChatModel", "ModelUnavailable", "Suggestions"]
