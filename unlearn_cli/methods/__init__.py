"""Unlearning methods: one module per method, each a loss object registered in ``METHODS``.

A method (contract: ``contracts.Method``) holds its hyperparameters (constructor keywords = the YAML
schema) and ``loss(model, batch, reference) -> (terms, logs)``: the named, already weighted parts of
the objective (``forget`` always, ``retain`` when present) whose sum the loop minimises. Methods read
answer-token NLLs through ``models.forward.answer_forward`` and build their retain term from the one
``_retain.RetainTerm``. Flags tell the setup what to build: ``needs_reference`` (a frozen theta_0),
``needs_retain`` (retain batches), ``needs_hooks`` (hidden states).
"""
