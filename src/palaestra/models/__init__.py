"""palaestra.models: text generators with token-exact outputs (tiny embedded, local HF, OpenAI-compatible)."""
