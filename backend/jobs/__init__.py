"""Jobs: work that runs as `accelerate launch` processes in a folder of its own, supervised, abortable and
found again after a restart (fine-tunes, preprocessing stages, evaluations). Generic: what a job computes is
its stage's business; this package owns the folder, the command, the processes and the devices."""
