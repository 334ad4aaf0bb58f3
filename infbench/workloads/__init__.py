"""Workloads: what one timed call does (DESIGN.md, "Workloads").

- ``forward``: one pass over (batch, seq_len): encoders, and a decoder's prefill. Its engines are
  ``infbench.engines``, its session ``infbench.cell`` (the pipeline's original workload, not moved here).
- ``generate`` (``infbench.workloads.generate``): prefill a prompt, then decode exactly ``new_tokens`` tokens
  one at a time with a KV cache; TTFT and every step timed on the device.

A new workload is a package here: its cell key, its backends (a registry), how one call is timed inside the
shared rounds (``infbench.measure.rounds``), what its record adds, and its tables; the statistics, the
records' files, the paired comparisons and the report stay shared.
"""
