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
    by_module: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, code in results().items():
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        module = name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]
        if code in KILLED:
            status = "killed"
        elif name in equivalent:
            status = "equivalent"
        else:
            status = NAMES.get(code, "suspicious")
        by_module[module][status].append(name)
    print("# Mutation report (mutmut 3.8.1, `make mutation`)\n")
    print("Scope: mutation/scope.txt. Score = killed / (mutants checked - equivalent). Equivalent mutants, each "
          "with its reason: mutation/equivalent.toml.\n")
    runs = ROOT / "mutation" / "runs.md"  # by hand: which runs the results below come from
    if runs.exists():
        print(runs.read_text(encoding="utf-8").strip() + "\n")
    print("| module | mutants | killed | equivalent | survived | not checked | score |")
    print("|:--|--:|--:|--:|--:|--:|--:|")
    total = defaultdict(int)
    for module, statuses in sorted(by_module.items()):
        n = sum(len(v) for v in statuses.values())
        k, e, s = len(statuses["killed"]), len(statuses["equivalent"]), len(statuses["survived"])
        unchecked = n - k - e - s
        score = k / (n - e - len(statuses["not checked"])) if n - e - len(statuses["not checked"]) else float("nan")
        print(f"| {module} | {n} | {k} | {e} | {s} | {unchecked} | {score:.1%} |")
        for key, value in (("n", n), ("k", k), ("e", e), ("s", s), ("u", unchecked),
                           ("nc", len(statuses["not checked"]))):
            total[key] += value
    checked = total["n"] - total["e"] - total["nc"]
    print(f"| **all** | {total['n']} | {total['k']} | {total['e']} | {total['s']} | {total['u']} | "
          f"**{total['k'] / checked if checked else float('nan'):.1%}** |\n")
    survivors = [(m, name) for m, st in sorted(by_module.items()) for s in ("survived", "no tests", "suspicious",
                 "skipped") for name in st[s]]
    if survivors:
        print("## Not killed\n")
        for module, name in survivors:
            print(f"- `{name}`: {diff(name)}")
        print()
    codes = results()
    stale = sorted(name for name in equivalent if codes.get(name, 0) in KILLED or name not in codes)
    if stale:  # a mutant renumbered after its function changed: the reason may describe another mutation
        print("## Entries in equivalent.toml that match no surviving mutant (check or remove them)\n")
        for name in stale:
            print(f"- `{name}`: {'killed' if name in codes else 'no such mutant'}")
        print()
    if any(st["equivalent"] for st in by_module.values()):
        print("## Equivalent (cannot change behaviour)\n")
        for st in by_module.values():
            for name in st["equivalent"]:
                print(f"- `{name}`: {equivalent[name]}  \n  `{diff(name)}`")


if __name__ == "__main__":
    main()
