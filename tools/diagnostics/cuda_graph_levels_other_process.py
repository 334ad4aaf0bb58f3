"""What flips a CUDA-graph replay between its two levels? One process P times BERT-base fp16 b1 s128 graph windows
(0.2 s warm-up + 20 replays) after each of: nothing (fresh), another process's GEMMs while it stays alive, its
exit, P's own eager launches, another process that only creates a context and exits."""
import multiprocessing as mp, statistics, time
import torch

from bert_graph import build

def windows(run, n=4):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(n):
        t = time.perf_counter(); xs = []
        while time.perf_counter() - t < 0.2:
            a.record(); run(); b.record(); b.synchronize()
        for _ in range(20):
            a.record(); run(); b.record(); b.synchronize(); xs.append(a.elapsed_time(b))
        out.append(round(statistics.median(xs), 4))
    return out

def gemms(seconds, hold, ready):
    import torch
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        x @ x; torch.cuda.synchronize()
    ready.set()
    hold.wait()

def context_only(_):
    import torch
    torch.zeros(1, device="cuda"); torch.cuda.synchronize()

if __name__ == "__main__":
    mp.set_start_method("spawn")
    replay, eager = build()
    print("fresh", windows(replay), flush=True)
    hold, ready = mp.Event(), mp.Event()
    p = mp.Process(target=gemms, args=(3, hold, ready)); p.start(); ready.wait()
    print("other alive after its gemms", windows(replay), flush=True)
    hold.set(); p.join()
    print("other exited", windows(replay), flush=True)
    t = time.perf_counter()
    while time.perf_counter() - t < 0.3: eager(); torch.cuda.synchronize()
    print("after own eager", windows(replay), flush=True)
    time.sleep(3)
    print("after 3 s idle", windows(replay), flush=True)
    q = mp.Process(target=context_only, args=(0,)); q.start(); q.join()
    print("after a context-only process", windows(replay), flush=True)
    hold, ready = mp.Event(), mp.Event()
    p = mp.Process(target=gemms, args=(3, hold, ready)); p.start(); ready.wait(); hold.set(); p.join()
    print("after other gemms + exit", windows(replay), flush=True)
    for i in range(3):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3: eager(); torch.cuda.synchronize()
        print("after own eager", i, windows(replay, 2), flush=True)
