"""Train-time plug-ins: one module per plug-in, registered in ``PLUGINS`` (contract: ``contracts.TrainPlugin``).

A plug-in hooks into the unlearning loop of any method: ``setup`` before the optimizer is built, optional
extra named loss terms, ``after_step`` after every update, ``close`` at the end.
"""
