"""palaestra.train: multi-turn RL for agents.

Turn rewards (`rewards`), advantage estimators (`advantages`), PPO-style losses (`losses`), the
fast log-prob forward (`forward`), and the trainer loop (`trainer`) behind `palaestra train`.
"""
