"""Two questions on the H100, one process (BERT-base, random weights, transformers' BertModel):

1. Why do small CUDA-graph replays sit at one of two levels ~10 % apart, window to window, in the pipeline?
   Windows (0.2 s synchronised warm-up + N timed replays, CUDA events, as infbench times them) under:
   A plain (0.5 s idle before), B after 0.3 s of heavy GEMMs, C after 0.3 s of eager launches,
   D three long windows (2000 replays: transitions inside a window), E an injected host gap before each
   iteration (0..1000 us), F polling the end event instead of synchronize(), G 14 CPU burners beside.
   nvidia-smi logs clocks/power/reasons every 20 ms in the background.
2. How much does each cell slow down on a slower host, against its GPU busy share? Our thread pinned to one
   CPU, a burner pinned to its SMT sibling (or none), windows alternating calm/burn; a profiler trace
   (chrome JSON) of 3 calls of each cell is saved for the offline model.
"""
import gzip, json, multiprocessing as mp, os, shutil, statistics, subprocess, sys, time

import torch

from bert_graph import eager, graphed

OUT = os.environ.get("OUT", "/tmp")


EA, EB = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def busy_wait_us(us):
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def timed(run, gap_us=0, poll=False):
    if gap_us:
        busy_wait_us(gap_us)
    EA.record(); run(); EB.record()
    if poll:
        while not EB.query():
            pass
    else:
        EB.synchronize()
    return EA.elapsed_time(EB)


def cpu_now():
    try:
        return int(open("/proc/thread-self/stat").read().rsplit(")", 1)[1].split()[36])
    except Exception:
        return None


def window(run, n=20, warm_s=0.2, gap_us=0, poll=False, budget_s=None):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warm_s:
        timed(run, gap_us, poll)
    xs, t1 = [], time.perf_counter()
    while len(xs) < n and (budget_s is None or time.perf_counter() - t1 < budget_s):
        xs.append(timed(run, gap_us, poll))
    return xs


def probe():
    t = time.perf_counter(); x = 0
    for i in range(20000):
        x += i * i % 7
    return (time.perf_counter() - t) * 1e3


def spin(_=None):
    while True:
        pass


def pinned_spin(cpu):
    os.sched_setaffinity(0, {cpu})
    spin()


LOG = []


def rec(exp, **kw):
    kw.update(exp=exp, t=time.time(), cpu=cpu_now())
    if "xs" in kw:
        xs = kw["xs"]; kw["median"] = statistics.median(xs); kw["n"] = len(xs)
    LOG.append(kw)
    print(exp, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in kw.items() if k not in ("xs", "t")}, flush=True)


def part1():
    cg = graphed("fp16", 1, 128)
    heavy_a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    light = eager("fp16", 1, 128)
    for w in range(12):
        time.sleep(0.5); rec("A_plain", xs=window(cg))
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            heavy_a @ heavy_a
        torch.cuda.synchronize(); rec("B_after_heavy", xs=window(cg))
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            light(); torch.cuda.synchronize()
        rec("C_after_eager", xs=window(cg))
    for w in range(3):
        rec("D_long", xs=window(cg, n=2000), keep=True)
    for rep in range(3):
        for gap in (0, 20, 50, 100, 300, 1000):
            rec("E_gap", gap_us=gap, xs=window(cg, n=150, gap_us=gap))
    for w in range(8):
        rec("F_sync", xs=window(cg)); rec("F_poll", xs=window(cg, poll=True))
    burners = [mp.Process(target=spin, daemon=True) for _ in range(14)]
    [p.start() for p in burners]
    time.sleep(0.5)
    for w in range(8):
        rec("G_burners", xs=window(cg), probe_ms=probe())
    [p.kill() for p in burners]
    time.sleep(0.5)
    for w in range(8):
        rec("G_calm", xs=window(cg), probe_ms=probe())


CELLS = [("eager", "fp16", 1, 128), ("eager", "fp16", 8, 128), ("eager", "fp16", 32, 128),
         ("eager", "fp16", 32, 512), ("eager", "fp16", 8, 512), ("eager", "fp32", 8, 128),
         ("eager", "fp32", 32, 16), ("eager", "fp32", 1, 128), ("graph", "fp16", 1, 128), ("graph", "fp16", 8, 512)]


def part2():
    from torch.profiler import ProfilerActivity, profile
    me = cpu_now()
    os.sched_setaffinity(0, {me})
    try:
        sib = [int(c) for c in open(f"/sys/devices/system/cpu/cpu{me}/topology/thread_siblings_list").read().strip().replace("-", ",").split(",") if int(c) != me]
    except Exception:
        sib = []
    print("pinned to", me, "siblings", sib, flush=True)
    burner_cpu = sib[0] if sib else me
    for kind, prec, b, s in CELLS:
        run = eager(prec, b, s) if kind == "eager" else graphed(prec, b, s)
        name = f"{kind}_{prec}_b{b}_s{s}"
        for _ in range(3):
            run()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                EA.record(); run(); EB.record(); EB.synchronize()
        path = f"/tmp/trace_{name}.json"
        prof.export_chrome_trace(path)
        with open(path, "rb") as f, gzip.open(f"{OUT}/trace_{name}.json.gz", "wb") as g:
            shutil.copyfileobj(f, g)
        for rep in range(4):
            for state in ("calm", "burn"):
                p = None
                if state == "burn":
                    p = mp.Process(target=pinned_spin, args=(burner_cpu,), daemon=True); p.start(); time.sleep(0.2)
                pr = probe()
                xs = window(run, n=400, budget_s=0.4)
                pr2 = probe()
                if p:
                    p.kill(); p.join()
                rec("H_" + state, cell=name, xs=xs, probe_ms=min(pr, pr2))
                time.sleep(0.2)


if __name__ == "__main__":
    mp.set_start_method("fork")
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,clocks_event_reasons.active,temperature.gpu,utilization.gpu",
                            "--format=csv,noheader", "-lms", "20"], stdout=open(f"{OUT}/smi.csv", "w"), stderr=subprocess.STDOUT)
    t0 = time.time()
    try:
        if "1" in sys.argv[1:]:
            part1()
        if "2" in sys.argv[1:]:
            part2()
    finally:
        smi.terminate()
        json.dump(LOG, open(f"{OUT}/levels.json", "w"))
        print("wall", time.time() - t0)
