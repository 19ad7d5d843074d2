"""Evaluate: behaviour probes streamed through the real chat loop, scored with Full-Duplex-Bench's formulas, per
model side by side (`moshi-studio evaluate`, the Evaluate tab); runs as a job (backend.jobs)."""
