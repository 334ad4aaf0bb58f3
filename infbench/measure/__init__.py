"""The measurement core: how one number is made.

- ``timing``: one round -- a warm-up and a timed window of one cell, with its stopping rule and clocks;
- ``rounds``: the replicates -- every cell of a shape timed in interleaved, shuffled rounds spread over time;
- ``stats``: statistics within a round (median, order-statistic interval) and across rounds (the cell's
  latency, its rerun interval, paired speedups, the tie rule);
- ``host``: a cheap probe of the host CPU's state, recorded with every round;
- ``gpu_busy``: the share of a GPU cell's latency that is device work (the host-bound diagnosis), from a
  profiled pass after the rounds;
- ``host_response``: how that latency moves with the host's speed, from the same profiled calls replayed (what
  the host's between-run drift widens an interval by);
- ``spread``: why an interval is as wide as it is -- the named cause from the rounds' own records (the host's
  drift, the SM clock, two levels, the position in the round, the host's speed);
- ``order``: across a run's two-level cells, which cell timed earlier in a round goes with the slow level.
A new statistic goes in ``stats``; a new per-round observation in ``host`` (or a module beside it); a new cause
of spread in ``spread``; a new question asked of a run's rounds as a whole beside ``order``.
"""
