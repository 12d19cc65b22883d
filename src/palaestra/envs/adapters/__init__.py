"""Adapters that wrap other game libraries as palaestra envs (`openspiel:`, `textarena:`)."""
