"""Trackers and metrics: time, memory, the environment, the machine's load, fidelity metrics,
and what weights occupy and how fast the device reads them. They know torch, not Chatterbox."""
