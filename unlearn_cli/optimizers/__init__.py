"""Optimizers: one module per optimizer, registered in ``OPTIMIZERS`` (contract: ``contracts.OptimizerSpec``).

An entry's constructor keywords are its YAML hyperparameters; ``build(params, lr)`` returns a
``torch.optim.Optimizer`` whose ``step(closure)`` the training loop calls. The closure evaluates all
loss terms or a named subset, with or without backward (``train.loop``), so optimizers that
re-evaluate the loss (SAM, zeroth-order, hybrid) use the same loop as AdamW. A wrapper takes its
base optimizer as a nested section (a parameter annotated ``OptimizerSpec`` is built from the
registry: ``optimizer.base.name=adamw``).
"""
