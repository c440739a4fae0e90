"""Test servers: stand-ins for external processes the service talks to (Ollama)."""
