"""Is the fast level of a CUDA-graph replay the state right after an idle host/GPU (the pipeline's first
windows of a round are fast, later ones slow)? BERT-base fp16 b1 s128 graph, transformers BertModel.
For idle S in (0.5, 2, 6, 12) s: sleep S, then 10 windows back to back (0.2 s warm-up + 20 replays), each with the
host probe; then one long window (3000 replays) after S = 6 with per-iteration event and host times.
Variant 'other': during the 6 s idle a second process runs GEMMs on the GPU (another session's round)."""
import json, multiprocessing as mp, os, statistics, time
import torch

from bert_graph import build, gemms
OUT = os.environ.get("OUT", "/tmp")

A, B = None, None
def timed(run):
    h = time.perf_counter(); A.record(); run(); h2 = time.perf_counter(); B.record(); B.synchronize()
    return A.elapsed_time(B), (h2 - h) * 1e3

def window(run, n=20, warm=0.2):
    t = time.perf_counter()
    while time.perf_counter() - t < warm: timed(run)
    return [timed(run) for _ in range(n)]

def probe():
    t = time.perf_counter(); x = 0
    for i in range(20000): x += i * i % 7
    return (time.perf_counter() - t) * 1e3


if __name__ == "__main__":
    mp.set_start_method("spawn")
    run, _ = build(); A = torch.cuda.Event(enable_timing=True); B = torch.cuda.Event(enable_timing=True)
    log = []
    for rep in range(2):
        for idle in (0.5, 2, 6, 12, "other"):
            if idle == "other":
                p = mp.Process(target=gemms, args=(6,)); p.start(); p.join()
            else:
                time.sleep(idle)
            meds = []
            for w in range(10):
                pr = probe(); xs = window(run)
                meds.append((round(statistics.median(x for x, _ in xs), 4), round(statistics.median(h for _, h in xs) * 1e3, 1), round(pr, 2)))
            log.append({"idle": idle, "rep": rep, "windows": meds})
            print(idle, rep, meds, flush=True)
    for idle in (6, 0):
        time.sleep(idle)
        xs = [timed(run) for _ in range(3000)]
        log.append({"long_after_idle": idle, "samples": xs})
        ev = [x for x, _ in xs]
        print("long after", idle, [round(statistics.median(ev[i:i + 100]), 4) for i in range(0, 3000, 100)], flush=True)
    json.dump(log, open(f"{OUT}/idle.json", "w"))
