"""palaestra.rollout: run episodes (one, or thousands concurrently with resume)."""

from palaestra.rollout.episode import play_episode

__all__ = ["play_episode"]
