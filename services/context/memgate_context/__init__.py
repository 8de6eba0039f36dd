"""memgate context service: what memory goes into a request, in milliseconds."""

from memgate_context.service import ContextService

__all__ = ["ContextService"]
