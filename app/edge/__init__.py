"""The edge: who may connect, how much one client may take, and what is refused.

One module per policy; each refusal goes through `refusals.Refusals`, so every one is
counted by reason and logged once, and an operator can tell an attack from a bug.
"""
