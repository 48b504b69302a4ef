"""Load time and memory against model size: TensorFlow and jaxsm on 0.26, 0.52 and 1.05 GiB of variables.

    python benchmarks/scaling.py [--repeats 3] [--out benchmarks/results/scaling.json]

The models are ``run.py``'s ``embedding_1gb`` (4 tables, the same directory) and its 1- and 2-table versions:
embedding tables of 550,000 x 128 float32, built once with Keras into ``--models-dir`` (Keras 3's export writes
every variable twice, so the checkpoints hold twice that). Each (size, framework) runs in its own fresh process
per repeat, alternating, through ``run.py``'s child (imports, load, first call at batch 1). For each framework
it fits ``value = intercept + slope x GiB`` to the medians of ``load_s``, ``anon_rss_mib`` (the process's own
memory, without mapped files) and ``peak_rss_mib``, and reports the slope per GiB of variables and the largest
deviation from the line (linear: a few percent). An anonymous-memory slope of ~1024 MiB per GiB is one copy of
the variables in the process; ~0 means they are only mapped from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (benchmarks/run.py: model building and the measuring child)

SIZES = {"embedding_256mb": 1, "embedding_512mb": 2, "embedding_1gb": 4}  # name -> tables (run.py's is 1gb)
METRICS = ("load_s", "anon_rss_mib", "peak_rss_mib")


def config(tables: int) -> dict[str, Any]:
    big = dict(tables=tables, rows=550_000, dim=128, seq=16)
    return dict(
        builder="embedding_1gb",
        params=big,
        input={"shape": [big["seq"]], "dtype": "int32", "high": big["rows"]},
        steady=False,
    )


def gib_of_variables(p: dict[str, Any]) -> float:
    return p["tables"] * p["rows"] * p["dim"] * 4 / 2**30


def fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares line through (xs, ys); ``max_dev`` is the largest |residual| over the largest y."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    intercept = my - slope * mx
    dev = max(abs(y - (intercept + slope * x)) for x, y in zip(xs, ys)) / max(abs(y) for y in ys)
    return {"slope_per_gib": slope, "intercept": intercept, "max_dev": dev}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--models-dir", default=os.path.join(run.TMP, "jaxsm_bench_models"))
    parser.add_argument("--out", default=os.path.join(run.HERE, "results", "scaling.json"))
    args = parser.parse_args()

    sizes: list[dict[str, Any]] = []
    for name, tables in SIZES.items():
        cfg = config(tables)
        path = run.model_path(args.models_dir, name, cfg)
        err = run.ensure_built(name, cfg, path)
        if err:
            sys.exit(f"building {name} failed: {err}")
        run.warm_page_cache(path)
        sizes.append(
            dict(name=name, path=path, cfg=cfg, gib=gib_of_variables(cfg["params"]), runs={"tf": [], "jaxsm": []})
        )
    run.compile_bytecode()

    t0 = time.perf_counter()
    for rep in range(args.repeats):
        for s in sizes:
            for fw in ("tf", "jaxsm") if rep % 2 == 0 else ("jaxsm", "tf"):
                spec = dict(role="measure", framework=fw, path=s["path"], input=s["cfg"]["input"], warmup=0)
                r = run.run_child(spec, args.timeout)
                s["runs"][fw].append(r)
                msg = r.get("error") or ", ".join(f"{k} {r[k]:.3f}" for k in METRICS)
                print(f"[{time.perf_counter() - t0:5.0f}s] {s['name']} {s['gib']:.2f} GiB {fw:<5} rep {rep}: {msg}")

    report: dict[str, Any] = {"machine": run.machine_info(), "repeats": args.repeats, "sizes": [], "fits": {}}
    for s in sizes:
        med = {fw: {m: run.median_of(rs, m) for m in METRICS} for fw, rs in s["runs"].items()}
        report["sizes"].append(dict(name=s["name"], gib=s["gib"], medians=med, runs=s["runs"]))
    print(f"\n{'GiB':>5} {'framework':<9} " + " ".join(f"{m:>13}" for m in METRICS))
    for s in report["sizes"]:
        for fw, med in s["medians"].items():
            print(f"{s['gib']:5.2f} {fw:<9} " + " ".join(run.fmt(med[m]).rjust(13) for m in METRICS))
    print(f"\n{'fit (per GiB of variables)':<28} {'framework':<9} {'slope':>10} {'intercept':>10} {'max dev':>8}")
    for fw in ("tf", "jaxsm"):
        for m in METRICS:
            pts = [(s["gib"], s["medians"][fw][m]) for s in report["sizes"] if s["medians"][fw][m] is not None]
            if len(pts) < 2:
                continue
            f = report["fits"].setdefault(fw, {})[m] = fit(*map(list, zip(*pts)))
            print(
                f"{m:<28} {fw:<9} {run.fmt(f['slope_per_gib']):>10} {run.fmt(f['intercept']):>10} "
                f"{f['max_dev'] * 100:7.1f}%"
            )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
