"""Rule reference: the inputs of one shape and the eager PyTorch outputs (fp32, fp64) cells are judged by."""

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
parser.add_argument("--device", default="cpu", help="where the reference runs (fp64 is slow on a CPU)")
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
model_dir = Path(args.manifest).parent
manifest = artifacts.read_manifest(model_dir)
inputs = artifacts.make_inputs(manifest, args.batch, args.seq_len, args.seed)
# fp32 without TF32: the baseline every cell is compared with is true fp32 arithmetic
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
references = {}
for precision in ("fp32", "fp64"):
    module = models.load_module(model_dir, precision, args.device)
    with torch.inference_mode():
        output = module(*(torch.from_numpy(a).to(args.device) for a in inputs.values()))
    references[precision] = output.float().cpu().numpy() if precision == "fp32" else output.cpu().numpy()
    del module
artifacts.save_reference(args.out, inputs, references)
logging.info("reference %s: output %s", args.out, references["fp32"].shape)
