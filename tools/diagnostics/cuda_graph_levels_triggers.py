"""Which event puts a small CUDA-graph replay on its fast or its slow level? One process P times BERT-base fp16
b1 s128 graph windows (0.2 s warm-up + 20 replays, CUDA events) after each candidate event, in order:
its own 3 s of GEMMs (is it load, or another process?), another process's GEMMs for 0.3 s and for 3 s, then the
things P's pipeline does between windows (allocate and free 2 GiB with empty_cache, a new stream's work, NVML
queries, a new graph capture, eager at a large shape, idle). A profiler pass at each level says whether the
kernels or the gaps between them grow. nvidia-smi logs clocks, P-state and reasons every 100 ms."""
import ctypes, json, multiprocessing as mp, os, statistics, subprocess, sys, time
import torch

from bert_graph import build, eager, gemms, graphed, window_medians
OUT = os.environ.get("OUT", "/tmp")
LOG = []


def other(seconds):
    p = mp.Process(target=gemms, args=(seconds,)); p.start(); p.join()


def rec(event, replay):
    ws = window_medians(replay, 3)
    LOG.append({"event": event, "t": time.time(), "windows": ws})
    print(f"{event:40s} {ws}", flush=True)
    return statistics.median(ws)


def profile_level(replay, tag):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            replay()
        torch.cuda.synchronize()
    ks = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in ks) / 10 / 1e3
    span = (max(e.time_range.end for e in ks) - min(e.time_range.start for e in ks)) / 10 / 1e3
    LOG.append({"profile": tag, "kernel_ms_per_call": total, "span_ms_per_call": span, "kernels": len(ks) / 10})
    print(f"profile {tag}: kernels {len(ks) / 10:.0f}/call, kernel sum {total:.4f} ms, span {span:.4f} ms", flush=True)


def nvml_queries():
    subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv"], capture_output=True)
    try:
        import pynvml
        pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
        for _ in range(100):
            pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM); pynvml.nvmlDeviceGetPowerUsage(h)
    except Exception as e:
        print("pynvml", e)


def alloc_free():
    x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda"); x.fill_(1); torch.cuda.synchronize()
    del x; torch.cuda.empty_cache()


def new_stream():
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
        for _ in range(50):
            y = y @ y / 64
    s.synchronize()


def heavy_eager():
    run = eager("fp16", 32, 512)
    t = time.perf_counter()
    while time.perf_counter() - t < 1:
        run(); torch.cuda.synchronize()


def crowd_member(ready, stop, index):
    """What a waiting shape session holds: a context, a BERT graph of its own shape, some GiB, idle."""
    import torch
    from bert_graph import graphed
    replay = graphed("fp16", (1, 8, 32)[index % 3], (16, 128, 512)[index // 3 % 3])
    for _ in range(20):
        replay()
    held = torch.empty(4 << 30, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    ready.set()
    stop.wait()
    del held  # held until the crowd is told to go


def crowd(replay):
    """8 idle sessions beside P: does the fast level decay with them there (the pipeline's situation)?"""
    ctx = mp.get_context("spawn")
    stop, readies = ctx.Event(), [ctx.Event() for _ in range(8)]
    members = [ctx.Process(target=crowd_member, args=(readies[i], stop, i)) for i in range(8)]
    [m.start() for m in members]
    [r.wait() for r in readies]
    rec("crowd of 8 up", replay)
    other(0.3)
    for i in range(8):
        rec(f"crowd: after other 0.3 s, window set {i}", replay)
    time.sleep(5); rec("crowd: after 5 s idle", replay)
    stop.set(); [m.join() for m in members]
    rec("crowd gone", replay)
    other(0.3); rec("after other 0.3 s", replay)


def driver_steps():
    cuda = ctypes.CDLL("libcuda.so.1")
    size = ctypes.c_size_t()
    cuda.cuCtxGetLimit(ctypes.byref(size), 0)  # CU_LIMIT_STACK_SIZE
    print("stack limit", size.value, flush=True)
    return [("cuCtxSetLimit(stack, same)", lambda: cuda.cuCtxSetLimit(0, ctypes.c_size_t(size.value))),
            ("cuCtxSetLimit(stack, +1 KiB)", lambda: cuda.cuCtxSetLimit(0, ctypes.c_size_t(size.value + 1024))),
            ("cuCtxSetCacheConfig(prefer shared)", lambda: cuda.cuCtxSetCacheConfig(1)),
            ("cuCtxSetCacheConfig(prefer none)", lambda: cuda.cuCtxSetCacheConfig(0))]


def chain_model(path, n=24, d=768):
    """24 x (MatMul + Add + Relu) on fp16 [1, 128, 768]: ORT's CUDA provider runs cuBLAS and its own kernels."""
    import numpy as np, onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(n):
        inits += [numpy_helper.from_array((rng.standard_normal((d, d)) / 32).astype(np.float16), f"w{i}"),
                  numpy_helper.from_array(np.zeros(d, np.float16), f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"y{i}"])]
        x = f"y{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 128, d])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT16, [1, 128, d])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    return x


def ort_steps():
    import numpy as np
    state = {}
    out_name = chain_model("/tmp/chain.onnx")

    def session(graph):
        import onnxruntime as ort
        s = ort.InferenceSession("/tmp/chain.onnx", providers=[("CUDAExecutionProvider", {
            "device_id": 0, "enable_cuda_graph": "1" if graph else "0"})])
        b = s.io_binding()
        x = ort.OrtValue.ortvalue_from_numpy(np.ones((1, 128, 768), np.float16), "cuda", 0)
        y = ort.OrtValue.ortvalue_from_shape_and_type([1, 128, 768], np.float16, "cuda", 0)
        b.bind_ortvalue_input("x", x); b.bind_ortvalue_output(out_name, y)
        state[graph] = (s, b, x, y)

    def runs(graph):
        s, b, _, _ = state[graph]
        for _ in range(20):
            s.run_with_iobinding(b)

    return driver_steps() + [
        ("import onnxruntime", lambda: __import__("onnxruntime")),
        ("ORT CUDA session created", lambda: session(False)),
        ("ORT run x20 (iobinding)", lambda: runs(False)),
        ("ORT run x20 again", lambda: runs(False)),
        ("ORT graph session created + run x20", lambda: (session(True), runs(True))),
        ("ORT graph run x20 again", lambda: runs(True))]


if __name__ == "__main__":
    mp.set_start_method("spawn")
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,pstate,clocks.sm,clocks.mem,clocks.video,power.draw,"
                            "clocks_event_reasons.active,temperature.gpu,temperature.memory,utilization.gpu",
                            "--format=csv,noheader", "-lms", "100"], stdout=open(f"{OUT}/smi.csv", "w"),
                           stderr=subprocess.STDOUT)
    replay, _ = build()
    t0 = time.time()
    try:
        rec("fresh", replay); rec("fresh again", replay)
        gemms(3); rec("after own 3 s GEMMs", replay)
        time.sleep(3); rec("after 3 s idle", replay)
        profile_level(replay, "before other process")
        rec("after profiler", replay)
        other(0.3); rec("after other 0.3 s GEMMs", replay)
        other(3); rec("after other 3 s GEMMs", replay)
        profile_level(replay, "after other process")
        rec("after profiler", replay)
        steps = [("alloc 2 GiB + free + empty_cache", alloc_free), ("new stream's GEMMs", new_stream),
                 ("NVML queries", nvml_queries), ("new graph capture b1 s16", lambda: graphed("fp16", 1, 16)),
                 ("eager fp16 b32 s512 1 s", heavy_eager), ("idle 10 s", lambda: time.sleep(10)),
                 ("own 3 s GEMMs", lambda: gemms(3))]
        for name, step in (steps if "all" in sys.argv[1:] else []):
            other(3); rec("  re-flip: other 3 s GEMMs", replay)
            step(); torch.cuda.synchronize(); rec("after " + name, replay)
            rec("  and again", replay)
        if "crowd" in sys.argv[1:]:
            crowd(replay)
        if "ort" in sys.argv[1:]:
            for name, step in ort_steps():
                other(3); rec("  re-flip: other 3 s GEMMs", replay)
                step(); torch.cuda.synchronize(); rec("after " + name, replay)
                rec("  and again", replay)
        for i in range(4):
            rec(f"drift {i}", replay)
    finally:
        smi.terminate()
        json.dump(LOG, open(f"{OUT}/triggers.json", "w"))
        print("wall", time.time() - t0)
