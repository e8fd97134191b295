"""Training a model: the loop (one model or a stacked cohort), its step, evaluation, gradient
statistics, timing, acceleration (torch.compile, CUDA graphs), precision and the allocator setting."""
