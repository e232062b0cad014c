"""Attacks on an unlearned model: one module per attack, registered in ``ATTACKS``.

An attack's constructor keywords are its YAML settings; ``run(ctx, model)`` returns the attacked
model (it may modify ``model``, which is a private copy of the unlearned model). Every attack is
followed by the full eval suite as its own stage, named after the attack.
"""
