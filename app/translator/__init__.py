"""The translator: fan-out under the backend's bound, retries, re-asks, time budgets, cache, single-flight.

`core` runs batches; `retry`, `flights` and `answers` are the parts it is made of.
"""

from app.translator.core import Job, Translator, summarize

__all__ = ["Job", "Translator", "summarize"]
