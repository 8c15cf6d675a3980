"""What stops training (kept apart from the trainer so the command line can catch it without importing torch)."""


class TrainingError(RuntimeError):
    """Training had to stop (NaN loss ...); the message says which checkpoint is kept."""
