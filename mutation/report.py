"""The mutation report: score per module over the mutants in mutation/scope.txt, survivors with reasons.

Reads mutmut's results (mutants/**/*.py.meta) and mutation/equivalent.toml (mutant name -> why it cannot
change behaviour). Score = killed / (checked - equivalent); a timeout or crash counts as killed, as mutmut
counts it. Prints markdown.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3, 36, 24, -24, 152, 255, -11, -9, 37}
CUDA_ONLY = "CUDA only"  # reasons that start so are untested on CPU machines, not equivalent
NAMES = {None: "not checked", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}


def scope() -> list[str]:
    lines = (ROOT / "mutation" / "scope.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def results() -> dict[str, int | None]:
    out = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def diff(name: str) -> str:
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True)
    changed = [line for line in shown.stdout.splitlines() if line.startswith(("+", "-"))
               and not line.startswith(("+++", "---"))]
    return " / ".join(line.strip() for line in changed)[:400]


def main() -> None:
    patterns = scope()
    equivalent = tomllib.loads((ROOT / "mutation" / "equivalent.toml").read_text()) \
        if (ROOT / "mutation" / "equivalent.toml").exists() else {}
    codes = results()
    by_module: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, code in codes.items():
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        module = name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]
        if code in KILLED:
            status = "killed"
        elif code is None:  # never run (or reset): not known to survive, whatever equivalent.toml says
            status = "not checked"
        elif name in equivalent:
            status = "cuda only" if equivalent[name].startswith(CUDA_ONLY) else "equivalent"
        else:
            status = NAMES.get(code, "suspicious")
        by_module[module][status].append(name)
    print("# Mutation report (mutmut 3.8.1, `make mutation`)\n")
    print("Scope: mutation/scope.txt. Score = killed / (mutants checked - equivalent - CUDA only); strict score = "
          "killed / mutants checked. Equivalent mutants, each with its reason: mutation/equivalent.toml; 'CUDA only' "
          "ones change behaviour only on a GPU, which no test machine has (untested, not equivalent).\n")
    runs = ROOT / "mutation" / "runs.md"  # by hand: which runs the results below come from
    if runs.exists():
        print(runs.read_text(encoding="utf-8").strip() + "\n")
    print("| module | mutants | killed | equivalent | CUDA only | survived | not checked | score | strict score |")
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    total: dict[str, int] = defaultdict(int)
    rows = sorted(by_module.items()) + [("**all**", None)]
    for module, statuses in rows:
        if statuses is not None:
            counts = {key: len(statuses[key]) for key in ("killed", "equivalent", "cuda only", "not checked")}
            counts["mutants"] = sum(len(v) for v in statuses.values())
            for key, value in counts.items():
                total[key] += value
        else:
            counts = total
        k, e, c, nc, n = (counts[key] for key in ("killed", "equivalent", "cuda only", "not checked", "mutants"))
        survived = n - k - e - c - nc
        scored, checked = n - e - c - nc, n - nc
        score = f"{k / scored:.1%}" if scored else "n/a"
        strict = f"{k / checked:.1%}" if checked else "n/a"
        print(f"| {module} | {n} | {k} | {e} | {c} | {survived} | {nc} | {score} | {strict} |")
    print()
    survivors = [(m, name) for m, st in sorted(by_module.items()) for s in ("survived", "no tests", "suspicious",
                 "skipped") for name in st[s]]
    if survivors:
        print("## Not killed\n")
        for module, name in survivors:
            print(f"- `{name}`: {diff(name)}")
        print()
    run_modules = {name.split(".x")[0] for name in codes}  # an entry of a module not mutated here is not stale
    stale = sorted(name for name in equivalent if (codes.get(name, 0) in KILLED or name not in codes)
                   and name.split(".x")[0] in run_modules)
    if stale:  # a mutant renumbered after its function changed: the reason may describe another mutation
        print("## Entries in equivalent.toml that match no surviving mutant (check or remove them)\n")
        for name in stale:
            print(f"- `{name}`: {'killed' if name in codes else 'no such mutant'}")
        print()
    for status, title in (("cuda only", "CUDA only (untested here: no GPU)"),
                          ("equivalent", "Equivalent (cannot change behaviour)")):
        names = [name for st in by_module.values() for name in st[status]]
        if names:
            print(f"## {title}\n")
            for name in names:
                print(f"- `{name}`: {equivalent[name]}  \n  `{diff(name)}`")
            print()

if __name__ == "__main__":
    main()
