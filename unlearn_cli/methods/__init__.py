"""Unlearning methods: one module per method, each a loss object registered in ``METHODS``.

A method holds its hyperparameters (constructor keywords = the YAML schema) and
``loss(model, batch, reference) -> (loss, logs)``. Flags tell the pipeline what it needs:
``needs_reference`` (a frozen theta_0), ``needs_retain`` (retain batches).
"""
