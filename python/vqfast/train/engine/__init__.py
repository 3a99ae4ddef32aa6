"""The family-agnostic engine: the loop, the Task contract, data, checkpoints, DDP, guard, metrics, samples."""
