"""Evaluation: run summaries, metrics, ratings and reports computed from episode records."""
