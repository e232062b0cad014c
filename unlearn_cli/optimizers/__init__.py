"""Optimizers: one module per optimizer, registered in ``OPTIMIZERS``.

An entry's constructor keywords are its YAML hyperparameters; ``build(params, lr)`` returns a
``torch.optim.Optimizer`` whose ``step(closure)`` the training loop calls, so optimizers that
re-evaluate the loss (SAM, zeroth-order, hybrid) use the same loop as AdamW.
"""
