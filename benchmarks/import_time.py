"""What `import invlab` and the first model load cost in a fresh process.

Each line runs in a new Python process (so nothing is cached in memory; the OS file cache is warm
after the first repeat) and reports the median wall time over the repeats. The breakdown line
lists the slowest top-level imports of a `load_model("digits")` (from `python -X importtime`).

    python benchmarks/import_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys

CASES = {
    "import torch": "import torch",
    "import invlab": "import invlab",
    "import invlab; load_model('gmm-digits')": "import invlab; invlab.load_model('gmm-digits')",
    "import invlab; load_model('digits')": "import invlab; invlab.load_model('digits')",
    "import invlab; load_model('digits-latent')": "import invlab; invlab.load_model('digits-latent')",
    "import invlab; gmm-digits sample, 10 steps": (
        "import invlab; m = invlab.load_model('gmm-digits'); invlab.sample(m, invlab.noise(m, 1), 10, cond=0)"),
}

TIMER = "import time; _t = time.perf_counter(); {code}; print(time.perf_counter() - _t)"


def timed(code: str, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", TIMER.format(code=code)], capture_output=True, text=True, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def heaviest_imports(code: str, n: int = 6) -> list[tuple[str, float]]:
    """Cumulative import time of the top-level packages a statement pulls in (``-X importtime``)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    top: dict[str, float] = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m.group(2):  # top-level entries only (no indentation)
            top[m.group(3)] = top.get(m.group(3), 0.0) + int(m.group(1)) / 1e6
    return sorted(top.items(), key=lambda kv: -kv[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"# fresh-process import/load times, median of {args.repeats}; {platform.machine()}, "
          f"python {platform.python_version()}")
    results = {}
    for name, code in CASES.items():
        results[name] = timed(code, args.repeats)
        print(f"{name:46s} {results[name]:7.3f} s", flush=True)
    print("(import invlab is lazy: the first model load pays for torch and for diffusers, whose schedulers give "
          "every grid)")
    print("heaviest top-level imports of load_model('digits'): " + ", ".join(
        f"{k} {v:.2f} s" for k, v in heaviest_imports(CASES["import invlab; load_model('digits')"])))


if __name__ == "__main__":
    main()
