"""The SLURM launcher of `make sweep LAUNCHER=slurm_gpu|slurm_cpu` (launcher.py): Hydra's submitit
launcher that waits for every job, retries lost ones and records them. In the `hydra_plugins` namespace package
because Hydra instantiates launchers only from there."""
