"""Training: the one loop and its step closure, batch streams, the unlearning setup shared by the pipeline and
the tests, the frozen reference, supervised fine-tuning, the prepare stage, checkpoints, process layout and
train-time plug-ins (SalUn first)."""
