"""Attacks on an unlearned model: one module per attack, registered in ``ATTACKS`` (contract: ``contracts.Attack``).

An attack's constructor keywords are its YAML settings; ``apply(ctx, model) -> (model, view)``
returns the attacked model (a weight attack may modify ``model``, a private copy of the unlearned
model) and, for an input attack, the ``eval.views.PromptView`` its stage is scored under. Attacks
are instances keyed by id (``attack.<id>``, ``name`` defaulting to the id): every instance is
followed by the full eval suite as its own stage named after the id, so ``relearn_50`` and
``relearn_100`` are two stages. An attack that trains configures its own optimizer. ``AttackContext``
(``attacks.context``) is what an attack may use.
"""
