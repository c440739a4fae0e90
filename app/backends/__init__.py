"""The engines that answer: Ollama's native API, any OpenAI-compatible server, an embedded llama-server.

Callers use the selector (`Selector.acquire` -> a `Lease` on an immutable `BackendHandle`, leases.py), the
health report (health.py) and the handle's backend (`chat`). The selector keeps one `BackendState` per backend
(state.py); everything else here is how each engine is spoken to.
"""

from app.backends.base import Backend, BackendHandle, ChatReply, ChatRequest, Message, Readiness
from app.backends.leases import Lease
from app.backends.selector import Selector

__all__ = ["Backend", "BackendHandle", "ChatReply", "ChatRequest", "Lease", "Message", "Readiness", "Selector"]
