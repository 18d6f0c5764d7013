"""Training: recipes, optimiser and schedule, atomic checkpoints, the trainer loop, DDP."""
