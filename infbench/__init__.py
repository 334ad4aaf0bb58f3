"""infbench: benchmark transformer inference across PyTorch eager, torch.compile, ONNX Runtime and TensorRT.

The library behind the Snakemake workflow: each rule's script calls one function here. Layout:
config (validation, matrix), models/artifacts (weights, inputs, references), onnx_graphs (export, fusion),
engines/ (one module per engine behind one interface), timing + stats (the one timing function), cell (one
cell → one record), records (the record format), tables/figures/report (everything downstream of records).
"""

__version__ = "0.1.0"
