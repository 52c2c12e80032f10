"""Scale on one box: ``distributed`` (torch.distributed training processes), ``placement`` (GPU plan, dry runs)."""
