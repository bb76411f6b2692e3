"""Experiments: run profiles, the two designs a run's replicates are made by (`runner`), the
fidelity probes that drive pipelines (`probes`), and the batch suite (`suite`) that runs each
variant in a fresh Jupyter kernel."""
