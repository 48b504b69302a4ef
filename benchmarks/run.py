"""TensorFlow vs jaxsm on the same Keras SavedModels and inputs, side by side, in one run.

    python benchmarks/run.py [--quick] [--models a,b] [--repeats N] [--out benchmarks/results/latest.json]

Every model is built once with Keras (``weights=None``, ``model.export(path)``, endpoint ``serve``) into a
cache directory (``--models-dir``, default ``/tmp/jaxsm_bench_models``). Then, for every repeat and every
model, four configurations each run in their own fresh subprocess, alternating (the order flips on odd
repeats):

  tf            ``tf.saved_model.load(path).serve(x)``
  jaxsm         ``jaxsm.load(path).serve(x)`` (jitted; compiles on the first call of each input shape)
  jaxsm+malloc  jaxsm after ``jaxsm.tune_malloc()`` (opt-in, process-wide: malloc keeps freed memory for
                reuse); steady-state latency only, reported without a target
  jaxsm+cache   jaxsm with JAX's persistent compilation cache (``jax_compilation_cache_dir`` set,
                ``jax_persistent_cache_min_compile_time_secs=0``). One untimed process per model fills the
                cache first, so every measured process finds it warm.

Each process records (medians over repeats are reported):

  cold start    wall time from spawning the process to the first result in hand (interpreter start +
                imports + load + building the input + first call, synchronised with ``.numpy()`` /
                ``block_until_ready``)
  import        ``import tensorflow`` / ``import jax, jaxsm``
  load          ``tf.saved_model.load`` / ``jaxsm.load`` alone, after imports
  compile       first call minus the median steady-state call, both at batch 1 (for jaxsm: trace + lower + XLA
                compile + one run; JAX's own compile-event durations are kept in the JSON as ``jax_events``)
  peak RSS      ``ru_maxrss`` of the process right after the first call (imports + load + first call)

Every repeat's tf, jaxsm and jaxsm+malloc processes go on to measure steady-state latency at batch 1 and batch 32:
they stay alive after their cold starts (which never overlap) and the parent has them take turns of
``STEADY_BURST`` calls, so that TF's and jaxsm's calls see the same machine conditions (a noisy neighbour on a
shared machine slows all of them, not one). Each process's value is the median of up to ``--calls`` calls (at
least 3, until one of them has spent ``--budget`` seconds) after warm-up calls, each call synchronised
(``.numpy()`` for TF, ``jax.block_until_ready`` for jaxsm); the table reports the median over the repeats. The
first repeat's batch-1 outputs of tf and jaxsm are compared (``max |diff|``). Inputs are NumPy arrays from the
same seeded generator in every process.

Prints one table (model x metric; TF, jaxsm, jaxsm/TF, target, met) and writes JSON with machine information.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TMP = tempfile.gettempdir()

# Targets: jaxsm/TF ratio must be <= this value.
TARGETS = {
    "cold_start_s": 0.5,
    "cold_start_cached_s": 0.25,
    "load_s": 0.1,
    "steady_b1_ms": 1.0,
    "steady_b32_ms": 1.0,
    "peak_rss_mib": 0.6,
}
BATCHES = (1, 32)
STEADY_BURST = 3  # timed calls per turn when TF's and jaxsm's steady-state calls alternate


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


def model_configs(quick: bool) -> dict[str, dict[str, Any]]:
    """name -> {params: builder arguments, input: one example's shape/dtype, steady: measure latency?}."""
    img = 64 if quick else 224
    image = {"shape": [img, img, 3], "dtype": "float32"}
    lstm = dict(seq=10, features=16, units=32, layers=2) if quick else dict(seq=50, features=64, units=256, layers=2)
    enc = (
        dict(layers=2, hidden=128, heads=2, ffn=512, seq=32, vocab=1000)
        if quick
        else dict(layers=12, hidden=768, heads=12, ffn=3072, seq=128, vocab=30522)
    )
    configs = {
        "mobilenet_v2": dict(params=dict(size=img), input=image),
        "resnet50": dict(params=dict(size=img), input=image),
        "efficientnet_b0": dict(params=dict(size=img), input=image),
        "lstm": dict(params=lstm, input={"shape": [lstm["seq"], lstm["features"]], "dtype": "float32"}),
        "encoder_small" if quick else "bert_base": dict(
            params=enc, input={"shape": [enc["seq"]], "dtype": "int32", "high": enc["vocab"]}
        ),
    }
    if not quick:
        # 4 tables x 550k x 128 float32 = 1.05 GiB of variables; load and memory only.
        big = dict(tables=4, rows=550_000, dim=128, seq=16)
        configs["embedding_1gb"] = dict(
            params=big, input={"shape": [big["seq"]], "dtype": "int32", "high": big["rows"]}, steady=False
        )
    for name, cfg in configs.items():
        cfg.setdefault("steady", True)
        cfg["builder"] = "encoder" if name in ("encoder_small", "bert_base") else name
    return configs


def build_model(builder: str, params: dict[str, Any], path: str) -> None:
    """Runs in a child process with TensorFlow: build the Keras model and export it to ``path``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    p = params
    if builder in ("mobilenet_v2", "resnet50", "efficientnet_b0"):
        app = {
            "mobilenet_v2": keras.applications.MobileNetV2,
            "resnet50": keras.applications.ResNet50,
            "efficientnet_b0": keras.applications.EfficientNetB0,
        }[builder]
        model = app(weights=None, input_shape=(p["size"], p["size"], 3), classifier_activation=None)
    elif builder == "lstm":
        x = inputs = keras.Input((p["seq"], p["features"]))
        for i in range(p["layers"]):
            x = layers.LSTM(p["units"], return_sequences=i < p["layers"] - 1)(x)
        model = keras.Model(inputs, layers.Dense(10)(x))
    elif builder == "encoder":

        class PositionEmbedding(layers.Layer):
            def build(self, input_shape):
                self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal")

            def call(self, x):
                return x + self.table

        ids = keras.Input((p["seq"],), dtype="int32")
        x = layers.Embedding(p["vocab"], p["hidden"])(ids)
        x = layers.LayerNormalization(epsilon=1e-12)(PositionEmbedding()(x))
        for _ in range(p["layers"]):
            a = layers.MultiHeadAttention(p["heads"], p["hidden"] // p["heads"])(x, x)
            x = layers.LayerNormalization(epsilon=1e-12)(x + a)
            f = layers.Dense(p["hidden"])(layers.Dense(p["ffn"], activation="gelu")(x))
            x = layers.LayerNormalization(epsilon=1e-12)(x + f)
        model = keras.Model(ids, layers.Dense(p["hidden"], activation="tanh")(x[:, 0]))
    elif builder == "embedding_1gb":
        ids = keras.Input((p["seq"],), dtype="int32")
        parts = [
            layers.GlobalAveragePooling1D()(layers.Embedding(p["rows"], p["dim"])(ids)) for _ in range(p["tables"])
        ]
        model = keras.Model(ids, layers.Dense(10)(layers.Concatenate()(parts)))
    else:
        raise ValueError(f"unknown model builder {builder!r}")
    model.export(path, verbose=False)


# ----------------------------------------------------------------------------------------------------
# Child: one framework, one model, fresh process
# ----------------------------------------------------------------------------------------------------


def make_input(np, spec: dict[str, Any], batch: int):
    rng = np.random.default_rng(0)
    shape = (batch, *spec["shape"])
    if spec["dtype"].startswith("int"):
        return rng.integers(0, spec["high"], size=shape).astype(spec["dtype"])
    return rng.standard_normal(shape).astype(spec["dtype"])


def child_measure(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    t0 = time.perf_counter()
    events: dict[str, float] = {}
    if spec["framework"] == "tf":
        import numpy as np
        import tensorflow as tf

        def sync(out):
            return [t.numpy() for t in tf.nest.flatten(out)]

        load = tf.saved_model.load
    else:
        import jax
        import numpy as np

        if spec.get("cache_dir"):
            jax.config.update("jax_compilation_cache_dir", spec["cache_dir"])
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

        def listen(event: str, duration: float, **_: Any) -> None:
            if event.startswith("/jax/core/compile/") or event.startswith("/jax/compilation_cache/"):
                key = event.rsplit("/", 1)[-1]
                events[key] = events.get(key, 0.0) + duration

        jax.monitoring.register_event_duration_secs_listener(listen)
        import jaxsm

        if spec.get("malloc"):
            jaxsm.tune_malloc()

        def sync(out):
            return [np.asarray(a) for a in jax.block_until_ready(jax.tree.leaves(out))]

        load = jaxsm.load
    r: dict[str, Any] = {"import_s": time.perf_counter() - t0}
    r["rss_import_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t1 = time.perf_counter()
    model = load(spec["path"])
    r["load_s"] = time.perf_counter() - t1
    fn = model.serve
    x = make_input(np, spec["input"], 1)
    t2 = time.perf_counter()
    out = sync(fn(x))
    r["first_call_s"] = time.perf_counter() - t2
    r["cold_start_s"] = time.time() - spec["t_spawn"]
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open("/proc/self/status") as f:  # the process's own (heap) memory, without mapped files
        r["anon_rss_mib"] = next((int(ln.split()[1]) for ln in f if ln.startswith("RssAnon:")), 0) / 1024
    r["jax_events_first_call"] = dict(events)
    if spec.get("out_npz"):
        np.savez(spec["out_npz"], *out)

    if spec.get("steady"):
        serve_steady(fn, sync, np, spec, r)
        r["peak_rss_after_steady_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return r


def serve_steady(fn, sync, np, spec: dict[str, Any], r: dict[str, Any]) -> None:
    """Steady-state calls on the parent's command, so that the parent can interleave TF's and jaxsm's calls in
    short bursts (both see the same machine conditions). Commands on stdin, one per line: ``prepare B`` (first
    call at batch B, untimed warm-up calls), ``burst B K`` (K timed, synchronised calls), ``done``."""
    sys.stdout.write("\n@@READY@@\n")
    sys.stdout.flush()
    inputs: dict[int, Any] = {}
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "done":
            break
        batch = int(cmd[1])
        if cmd[0] == "prepare":
            inputs[batch] = xb = make_input(np, spec["input"], batch)
            t = time.perf_counter()
            sync(fn(xb))
            r[f"first_call_b{batch}_s"] = time.perf_counter() - t
            for _ in range(spec["warmup"]):
                sync(fn(xb))
            reply: Any = "ok"
        else:
            reply = []
            for _ in range(int(cmd[2])):
                t = time.perf_counter()
                sync(fn(inputs[batch]))
                reply.append(time.perf_counter() - t)
        sys.stdout.write("@@REPLY@@" + json.dumps(reply) + "\n")
        sys.stdout.flush()


def child_main(arg: str) -> None:
    spec = json.loads(arg)
    if spec["role"] == "build":
        build_model(spec["builder"], spec["params"], spec["path"])
        result: dict[str, Any] = {"ok": True}
    else:
        result = child_measure(spec)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------------------------------


class Child:
    """A measuring child process the parent talks to (steady-state bursts); stderr goes to a file."""

    def __init__(self, spec: dict[str, Any], timeout: float):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self.timeout = timeout
        self.steady: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None  # the result of a child that measured no steady state
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", json.dumps(dict(spec, t_spawn=time.time()))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _line(self, *markers: str) -> tuple[str, str]:
        """The next line that starts with one of ``markers``: (marker, rest of the line)."""
        deadline = time.time() + self.timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                raise RuntimeError(f"timeout after {self.timeout:.0f} s") from None
            if line is None:
                raise RuntimeError("exited early")
            for marker in markers:
                if line.startswith(marker):
                    return marker, line[len(marker) :]

    def ready(self) -> None:
        """Wait until the child serves steady-state calls -- or, if it measures none, until it is done."""
        marker, rest = self._line("@@READY@@", "@@RESULT@@")
        if marker == "@@RESULT@@":
            self.final = json.loads(rest)

    def ask(self, command: str) -> Any:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line("@@REPLY@@")[1])

    def result(self) -> dict[str, Any]:
        """Tell the child to finish; its result dict (with an ``error`` if it failed)."""
        if self.final is not None:
            self.proc.wait()
            self.err.close()
            return self.final
        try:
            self.proc.stdin.write("done\n")  # a child that serves no steady state never reads it
            self.proc.stdin.flush()
        except OSError:
            pass  # it has exited already; its output is still queued
        try:
            return json.loads(self._line("@@RESULT@@")[1])
        except (RuntimeError, ValueError) as e:
            self.proc.kill()
            self.err.seek(0)
            tail = self.err.read()[-4000:]
            lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
            # The exception line (last line of a traceback), or what went wrong.
            return {"error": (lines[-1] if lines else str(e)).strip()[:300], "stderr_tail": tail}
        finally:
            self.proc.wait()
            self.err.close()


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one child to the end; returns its result dict, or {"error": "..."} (failure, timeout)."""
    return Child(spec, timeout).result()


def run_steady_group(specs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Start the children one after the other (their cold starts never overlap), then time their steady-state
    calls in alternating bursts at each batch size; returns their result dicts with ``steady_b*_ms``."""
    children: list[Child] = []
    try:
        for spec in specs:
            child = Child(spec, timeout)
            children.append(child)
            child.ready()
        first = specs[0]
        for batch in BATCHES if all(s.get("steady") for s in specs) else ():
            for child in children:
                child.ask(f"prepare {batch}")
            times: list[list[float]] = [[] for _ in children]
            while any(len(t) < first["calls"] for t in times) and (
                min(len(t) for t in times) < 3 or max(sum(t) for t in times) < first["budget"]
            ):
                for child, t in zip(children, times):
                    t.extend(child.ask(f"burst {batch} {STEADY_BURST}"))
                    time.sleep(0.02)  # let the other process's worker threads stop spinning before its turn
            for child, t in zip(children, times):
                child.steady[f"steady_b{batch}_ms"] = statistics.median(t) * 1e3
                child.steady[f"steady_b{batch}_calls"] = len(t)
    except RuntimeError:
        pass  # the failing child's result() reports the error
    results = []
    for child in children:
        r = child.result()
        if "error" not in r:
            r.update(child.steady)
        results.append(r)
    return results


def model_path(models_dir: str, name: str, cfg: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps([cfg["builder"], cfg["params"]], sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join(models_dir, f"{name}-{digest}")


def ensure_built(name: str, cfg: dict[str, Any], path: str) -> str | None:
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return None
    print(f"building {name} with Keras -> {path} ...", flush=True)
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    t = time.perf_counter()
    r = run_child(dict(role="build", builder=cfg["builder"], params=cfg["params"], path=tmp), timeout=3600)
    if "error" in r:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"  build failed: {r['error']}\n{r.get('stderr_tail', '')[-2000:]}", flush=True)
        return r["error"]
    os.replace(tmp, path)
    print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    return None


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def compile_bytecode() -> None:
    """Write the bytecode of jaxsm's modules once, as ``pip install`` does for every installed package (TF and
    JAX included). A source checkout run with PYTHONDONTWRITEBYTECODE=1 has none, and every fresh process would
    then spend ~0.1 s compiling jaxsm's sources inside its import and load times."""
    import compileall

    compileall.compile_dir(os.path.join(REPO, "jaxsm"), quiet=1)


def warm_page_cache(path: str) -> None:
    """Read every file once so that every process sees the same (cached) files."""
    for d, _, fs in os.walk(path):
        for f in fs:
            with open(os.path.join(d, f), "rb") as fh:
                while fh.read(1 << 24):
                    pass


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    info["versions"] = {}
    for dist in ("jax", "jaxlib", "tensorflow-cpu", "tensorflow", "keras", "numpy", "jaxsm"):
        try:
            info["versions"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return info


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if "error" not in r and r.get(key) is not None]
    return statistics.median(values) if values else None


def first_error(runs: list[dict[str, Any]]) -> str | None:
    return next((r["error"] for r in runs if "error" in r), None)


def summarize(
    name: str, runs: dict[str, list[dict[str, Any]]], diff: float | str | None, steady: bool
) -> list[dict[str, Any]]:
    """Rows (one per metric): {model, metric, tf, jaxsm, ratio, target, met}; a value may be 'error: ...'."""
    tf, jx, jc = runs.get("tf", []), runs.get("jaxsm", []), runs.get("jaxsm+cache", [])
    jm = runs.get("jaxsm+malloc", [])

    def value(rs: list[dict[str, Any]], key: str, derive=None) -> float | str | None:
        if not rs:
            return None
        v = derive(rs) if derive else median_of(rs, key)
        if v is None and first_error(rs):
            return f"error: {first_error(rs)}"
        return v

    def compile_time(rs: list[dict[str, Any]]) -> float | None:
        first, steady_ms = median_of(rs, "first_call_s"), median_of(rs, "steady_b1_ms")
        return None if first is None or steady_ms is None else first - steady_ms / 1e3

    def jax_event(*keys: str):
        def derive(rs: list[dict[str, Any]]) -> float | None:
            ok = [r["jax_events_first_call"] for r in rs if "error" not in r]
            return statistics.median(sum(e.get(k, 0.0) for k in keys) for e in ok) if ok else None

        return derive

    rows = [
        ("cold_start_s", value(tf, "cold_start_s"), value(jx, "cold_start_s")),
        ("cold_start_cached_s", value(tf, "cold_start_s"), value(jc, "cold_start_s")),
        ("import_s", value(tf, "import_s"), value(jx, "import_s")),
        ("load_s", value(tf, "load_s"), value(jx, "load_s")),
        ("first_call_s", value(tf, "first_call_s"), value(jx, "first_call_s")),
        ("first_call_cached_s", value(tf, "first_call_s"), value(jc, "first_call_s")),
    ]
    if steady:
        rows += [
            ("compile_s", value(tf, "", compile_time), value(jx, "", compile_time)),
            (
                "trace_lower_s",
                None,
                value(jx, "", jax_event("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration")),
            ),
            ("xla_compile_s", None, value(jx, "", jax_event("backend_compile_duration"))),
            ("steady_b1_ms", value(tf, "steady_b1_ms"), value(jx, "steady_b1_ms")),
            ("steady_b32_ms", value(tf, "steady_b32_ms"), value(jx, "steady_b32_ms")),
            ("steady_b1_malloc_ms", value(tf, "steady_b1_ms"), value(jm, "steady_b1_ms")),
            ("steady_b32_malloc_ms", value(tf, "steady_b32_ms"), value(jm, "steady_b32_ms")),
        ]
    rows += [
        ("peak_rss_mib", value(tf, "peak_rss_mib"), value(jx, "peak_rss_mib")),
        ("anon_rss_mib", value(tf, "anon_rss_mib"), value(jx, "anon_rss_mib")),
        ("max_abs_diff", None, diff),
    ]
    out = []
    for metric, a, b in rows:
        ratio = b / a if isinstance(a, float) and isinstance(b, float) and a > 0 else None
        target = TARGETS.get(metric)
        met = None if target is None else (ratio is not None and ratio <= target)
        out.append(dict(model=name, metric=metric, tf=a, jaxsm=b, ratio=ratio, target=target, met=met))
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v if len(v) <= 60 else v[:57] + "..."
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    if v == 0 or abs(v) >= 1e-3:
        return f"{v:.3f}"
    return f"{v:.1e}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'model':<16} {'metric':<20} {'TF':>10} {'jaxsm':>10} {'jaxsm/TF':>9} {'target':>7}  met"
    print("\n" + header + "\n" + "-" * len(header))
    last = None
    for r in rows:
        model = r["model"] if r["model"] != last else ""
        last = r["model"]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        target = "-" if r["target"] is None else f"<={r['target']:g}x"
        met = "" if r["met"] is None else ("met" if r["met"] else "UNMET")
        jx = fmt(r["jaxsm"])
        if isinstance(r["jaxsm"], str):  # errors: own column width, table stays readable
            print(f"{model:<16} {r['metric']:<20} {fmt(r['tf']):>10} {jx}  {met}")
        else:
            print(f"{model:<16} {r['metric']:<20} {fmt(r['tf']):>10} {jx:>10} {ratio:>9} {target:>7}  {met}")
    met = [r for r in rows if r["met"] is not None]
    print(f"\ntargets met: {sum(r['met'] for r in met)}/{len(met)}")


def table(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, entry in report["models"].items():
        if "build_error" in entry:
            err = f"error: build failed: {entry['build_error']}"
            rows.append(dict(model=name, metric="build", tf=err, jaxsm=err, ratio=None, target=None, met=None))
            continue
        rows += summarize(name, entry["runs"], entry.get("max_abs_diff"), entry.get("steady", True))
    return rows


def print_report(report: dict[str, Any]) -> None:
    m, st = report["machine"], report["settings"]
    end = m.get("load_average_end")
    end = f"{end[0]:.1f}" if end else "?"
    print(
        f"\n{m.get('cpu_model')}, {m['cpus_usable']} usable cores, load average at start "
        f"{m['load_average_start'][0]:.1f}, end {end}; versions {m['versions']}"
    )
    print(
        f"repeats {st['repeats']} (cold metrics: median over fresh processes), "
        f"steady: median of up to {st['calls']} calls; "
        "compile = first call - steady call (batch 1); trace_lower / xla_compile = JAX's "
        "jaxpr_trace + jaxpr_to_mlir_module / backend_compile event durations in the first call"
    )
    print_table(report.get("table") or table(report))


def output_diff(a: str, b: str) -> float | str | None:
    import numpy as np

    if not (os.path.exists(a) and os.path.exists(b)):
        return None
    with np.load(a) as fa, np.load(b) as fb:
        xs, ys = [fa[k] for k in fa.files], [fb[k] for k in fb.files]
    if len(xs) != len(ys) or any(x.shape != y.shape for x, y in zip(xs, ys, strict=True)):
        return f"error: output structure differs: {[x.shape for x in xs]} vs {[y.shape for y in ys]}"
    diffs = [np.abs(x.astype(np.float64) - y.astype(np.float64)) for x, y in zip(xs, ys, strict=True)]
    return max(float(d.max()) if d.size else 0.0 for d in diffs)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny inputs, one repeat, small encoder instead of BERT-base, no 1 GB model",
    )
    parser.add_argument("--models", help="comma-separated subset of the models (default: all)")
    parser.add_argument("--repeats", type=int, help="fresh-process repeats per configuration (default 3, quick 1)")
    parser.add_argument("--calls", type=int, help="max timed steady-state calls per batch (default 30, quick 10)")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds of timed steady-state calls per batch (at least 3 calls; default 10, quick 2)",
    )
    parser.add_argument("--timeout", type=float, help="seconds per child process (default 1200, quick 300)")
    parser.add_argument("--from-json", metavar="PATH", help="print the table of an earlier (or partial) run")
    parser.add_argument("--build-only", action="store_true", help="build the missing models and stop")
    parser.add_argument("--models-dir", default=os.path.join(TMP, "jaxsm_bench_models"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print_report(json.load(f))
        return
    q = args.quick
    repeats = args.repeats or (1 if q else 3)
    calls, budget = args.calls or (10 if q else 30), args.budget or (2.0 if q else 10.0)
    timeout = args.timeout or (300.0 if q else 1200.0)
    warmup = 2

    configs = model_configs(q)
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = sorted(set(wanted) - set(configs))
        if unknown:
            parser.error(f"unknown models {unknown}; choose from {sorted(configs)}")
        configs = {k: configs[k] for k in wanted}

    report: dict[str, Any] = {
        "machine": machine_info(),
        "settings": dict(
            quick=q,
            repeats=repeats,
            calls=calls,
            budget_s=budget,
            warmup=warmup,
            batches=list(BATCHES),
            timeout_s=timeout,
        ),
        "targets": TARGETS,
        "models": {},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    paths: dict[str, str] = {}
    for name, cfg in configs.items():
        path = paths[name] = model_path(args.models_dir, name, cfg)
        err = ensure_built(name, cfg, path)
        report["models"][name] = dict(
            path=path,
            params=cfg["params"],
            input=cfg["input"],
            steady=cfg["steady"],
            runs={"tf": [], "jaxsm": [], "jaxsm+malloc": [], "jaxsm+cache": []},
        )
        if err:
            report["models"][name]["build_error"] = err
        else:
            report["models"][name]["size_mib"] = dir_size(path) / 2**20
            warm_page_cache(path)
    if args.build_only:
        for name in configs:
            print(f"{name}: {report['models'][name].get('build_error') or paths[name]}")
        return

    compile_bytecode()
    work = tempfile.mkdtemp(prefix="jaxsm_bench_work-")  # outputs to compare, persistent compilation caches
    try:
        run_all(report, configs, paths, work, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_model_repeat(
    rep: int, name: str, cfg: dict[str, Any], entry: dict[str, Any], path: str, work: str, st: dict, t_start: float
) -> None:
    """One repeat of one model: TF, jaxsm and jaxsm+malloc (cold starts one after the other, then steady-state
    calls in alternating bursts) and jaxsm with the persistent cache; the order flips on odd repeats."""

    def spec_for(conf: str) -> dict[str, Any]:
        spec: dict[str, Any] = dict(
            role="measure",
            framework="tf" if conf == "tf" else "jaxsm",
            path=path,
            input=cfg["input"],
            warmup=st["warmup"],
            calls=st["calls"],
            budget=st["budget_s"],
        )
        if conf == "jaxsm+cache":
            spec["cache_dir"] = os.path.join(work, f"cache-{name}")
        else:
            spec["steady"] = cfg["steady"]
            spec["malloc"] = conf == "jaxsm+malloc"
            if rep == 0 and conf != "jaxsm+malloc":
                spec["out_npz"] = os.path.join(work, f"{name}-{conf}.npz")
        return spec

    def log(what: str, msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {name:<16} {what}: {msg}", flush=True)

    def record(conf: str, r: dict[str, Any]) -> None:
        r["repeat"] = rep
        entry["runs"][conf].append(r)
        if "error" in r:
            msg = f"ERROR {r['error']}"
        else:
            msg = (
                f"cold {r['cold_start_s']:.2f} s, import {r['import_s']:.2f} s, load {r['load_s']:.3f} s, "
                f"first call {r['first_call_s']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB"
            )
            if "steady_b1_ms" in r:
                msg += f", steady b1 {r['steady_b1_ms']:.2f} ms, b32 {r['steady_b32_ms']:.2f} ms"
        log(f"{conf:<12} rep {rep}", msg)

    def cached() -> None:
        spec = spec_for("jaxsm+cache")
        if rep == 0:  # fill the persistent cache in an untimed process
            fill = entry["cache_fill"] = run_child(spec, st["timeout_s"])
            log("cache fill", fill.get("error") or fmt(fill.get("cold_start_s")) + " s")
        record("jaxsm+cache", run_child(spec, st["timeout_s"]))

    group = ["tf", "jaxsm", "jaxsm+malloc"] if cfg["steady"] else ["tf", "jaxsm"]
    group = group if rep % 2 == 0 else group[::-1]
    if rep % 2:
        cached()
    for conf, r in zip(group, run_steady_group([spec_for(c) for c in group], st["timeout_s"])):
        record(conf, r)
    if rep % 2 == 0:
        cached()


def run_all(
    report: dict[str, Any], configs: dict[str, dict[str, Any]], paths: dict[str, str], work: str, out: str
) -> None:
    """Run every repeat x model x configuration, then summarize, print and save (after every process too)."""
    st = report["settings"]
    repeats = st["repeats"]
    live = [n for n in configs if "build_error" not in report["models"][n]]

    def save() -> None:
        with open(out, "w") as f:
            json.dump(report, f, indent=1, default=str)

    t_start = time.perf_counter()
    for rep in range(repeats):
        for name in live:
            entry = report["models"][name]
            run_model_repeat(rep, name, configs[name], entry, paths[name], work, st, t_start)
            if rep == 0 and all(entry["runs"][c] for c in ("tf", "jaxsm")):
                entry["max_abs_diff"] = output_diff(
                    os.path.join(work, f"{name}-tf.npz"), os.path.join(work, f"{name}-jaxsm.npz")
                )
            save()

    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_s"] = time.perf_counter() - t_start
    report["table"] = table(report)
    save()
    print_report(report)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
