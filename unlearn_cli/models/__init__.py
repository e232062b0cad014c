"""Models: building the tiny stand-ins and loading/saving Hugging Face checkpoints (``build``), decoder-layer
access and hidden-state capture (``layers``), and the one forward that losses read answer-token
log-probs from (``forward``)."""
