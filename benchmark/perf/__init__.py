"""Performance: the measured cohort costs, a GPU sweep's time estimate, the step-time regression check,
and the GPU benchmarks that measure them."""
