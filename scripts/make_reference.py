"""Rule reference: the inputs of one shape and the fp32 eager PyTorch output every cell is judged against."""

import argparse
import logging
from pathlib import Path

import torch

from infbench import artifacts, models

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--batch", type=int, required=True)
parser.add_argument("--seq-len", type=int, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
model_dir = Path(args.manifest).parent
manifest = artifacts.read_manifest(model_dir)
inputs = artifacts.make_inputs(manifest, args.batch, args.seq_len, args.seed)
module = models.load_module(model_dir, "fp32", "cpu")
with torch.inference_mode():
    reference = module(*(torch.from_numpy(a) for a in inputs.values())).numpy()
artifacts.save_reference(args.out, inputs, reference)
logging.info("reference %s: output %s", args.out, reference.shape)
