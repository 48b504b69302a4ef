"""Read a >= 100 MB TF checkpoint with jaxsm and with TensorFlow, side by side.

Writes the checkpoint once (with TF) into a temporary directory, then, in a fresh subprocess per run, opens it
and reads every tensor, touching every byte (a sum per tensor). Reports wall time and peak RSS
(``ru_maxrss``) for each reader, the RSS after imports, the peak growth over it, and the anonymous (heap)
RSS at the end: jaxsm memory-maps the shards, so the pages it touches count in ``ru_maxrss`` but are the
kernel's page cache, shared and reclaimable, not the process's heap.

    python benchmarks/checkpoint_read.py [--dir DIR] [--mb 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

WRITE = """
import numpy as np, tensorflow as tf
rng = np.random.default_rng(0)
module = tf.Module()
# A BERT-like mix: many mid-sized kernels, a few big embeddings, biases, a step counter and a vocab.
n_big, n_kernels = 3, 120
total = {mb} * 2**20 // 4
big = total // 2 // n_big
kernel = (total - n_big * big) // n_kernels
module.embeddings = [tf.Variable(rng.standard_normal(big, dtype=np.float32)) for _ in range(n_big)]
module.kernels = [tf.Variable(rng.standard_normal(kernel, dtype=np.float32)) for _ in range(n_kernels)]
module.biases = [tf.Variable(rng.standard_normal(768, dtype=np.float32)) for _ in range(n_kernels)]
module.vocab = tf.Variable(np.array([f"token{{i}}".encode() for i in range(30000)], dtype=object))
ckpt = tf.train.Checkpoint(model=module, step=tf.Variable(1000, dtype=tf.int64))
print(ckpt.write({prefix!r}))
"""

READ = """
import os, resource, time
t0 = time.perf_counter()
{imports}
t_import = time.perf_counter() - t0
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t1 = time.perf_counter()
reader = {open_}({prefix!r})
t_open = time.perf_counter() - t1
total = 0
for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if isinstance(value, bytes):
        total += len(value)
    elif getattr(value, "dtype", None) == object:
        total += sum(len(s) for s in value.reshape(-1))
    else:
        total += int(np.asarray(value).reshape(-1).view(np.uint8).sum(dtype=np.uint64))
t_read = time.perf_counter() - t1
rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# ru_maxrss counts touched pages of memory-mapped files too; RssAnon is the process's own (heap) memory.
with open("/proc/self/status") as f:
    anon = next((int(line.split()[1]) for line in f if line.startswith("RssAnon:")), 0)
print(json.dumps(dict(import_s=t_import, open_s=t_open, read_s=t_read, rss_import_kb=rss_import,
                      rss_peak_kb=rss_peak, anon_end_kb=anon, checksum=total)))
"""

READERS = {
    "jaxsm": dict(
        imports="import json, numpy as np; from jaxsm.format.checkpoint import load_checkpoint",
        open_="load_checkpoint",
    ),
    "tensorflow": dict(
        imports="import json, numpy as np; import tensorflow as tf",
        open_="tf.train.load_checkpoint",
    ),
}


def run(code: str) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise SystemExit(f"subprocess failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "jaxsm-bench-checkpoint"))
    parser.add_argument("--mb", type=int, default=128, help="approximate checkpoint size in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    prefix = os.path.join(args.dir, f"ckpt-{args.mb}mb")
    if not os.path.exists(prefix + ".index"):
        os.makedirs(args.dir, exist_ok=True)
        print(f"writing {args.mb} MiB checkpoint with TF to {prefix} ...", flush=True)
        run(textwrap.dedent(WRITE.format(mb=args.mb, prefix=prefix)))
    files = [os.path.join(args.dir, f) for f in os.listdir(args.dir) if f.startswith(os.path.basename(prefix))]
    size = sum(os.path.getsize(f) for f in files)
    for f in files:  # warm the page cache so both readers see the same (cached) files
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass

    results: dict[str, list[dict[str, float]]] = {name: [] for name in READERS}
    for _ in range(args.repeats):
        for name, spec in READERS.items():
            results[name].append(json.loads(run(READ.format(prefix=prefix, **spec))))
    sums = {r["checksum"] for rs in results.values() for r in rs}
    assert len(sums) == 1, f"readers disagree on the data: {sums}"

    print(f"\ncheckpoint: {prefix} ({size / 2**20:.1f} MiB), median of {args.repeats} fresh processes")
    header = f"{'reader':<11} {'import s':>9} {'open s':>8} {'open+read s':>12} {'RSS import MiB':>15} "
    print(header + f"{'peak RSS MiB':>13} {'peak-import MiB':>16} {'anon RSS at end MiB':>20}")
    for name, rs in results.items():

        def med(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(r[key] for r in rs)

        print(
            f"{name:<11} {med('import_s'):>9.2f} {med('open_s'):>8.3f} {med('read_s'):>12.3f} "
            f"{med('rss_import_kb') / 1024:>15.0f} {med('rss_peak_kb') / 1024:>13.0f} "
            f"{(med('rss_peak_kb') - med('rss_import_kb')) / 1024:>16.0f} {med('anon_end_kb') / 1024:>20.0f}"
        )


if __name__ == "__main__":
    main()
