"""What flips a CUDA-graph replay between its two levels? One process P times BERT-base fp16 b1 s128 graph windows
(0.2 s warm-up + 20 replays) after each of: nothing (fresh), another process's GEMMs while it stays alive, its
exit, P's own eager launches, another process that only creates a context and exits."""
import multiprocessing as mp, time
import torch

from bert_graph import build, window_medians

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
    print("fresh", window_medians(replay, 4), flush=True)
    hold, ready = mp.Event(), mp.Event()
    p = mp.Process(target=gemms, args=(3, hold, ready)); p.start(); ready.wait()
    print("other alive after its gemms", window_medians(replay, 4), flush=True)
    hold.set(); p.join()
    print("other exited", window_medians(replay, 4), flush=True)
    t = time.perf_counter()
    while time.perf_counter() - t < 0.3: eager(); torch.cuda.synchronize()
    print("after own eager", window_medians(replay, 4), flush=True)
    time.sleep(3)
    print("after 3 s idle", window_medians(replay, 4), flush=True)
    q = mp.Process(target=context_only, args=(0,)); q.start(); q.join()
    print("after a context-only process", window_medians(replay, 4), flush=True)
    hold, ready = mp.Event(), mp.Event()
    p = mp.Process(target=gemms, args=(3, hold, ready)); p.start(); ready.wait(); hold.set(); p.join()
    print("after other gemms + exit", window_medians(replay, 4), flush=True)
    for i in range(3):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3: eager(); torch.cuda.synchronize()
        print("after own eager", i, window_medians(replay, 2), flush=True)
