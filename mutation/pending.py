"""Mutants in scope that still need a run: never checked (new, or their function changed) or survived.

First refreshes mutants/ the way `mutmut run` starts (mutmut 3.8.1, pinned): sources whose functions changed
get new mutants and lose those functions' old results. Prints one mutant name per line, for
`make mutation-update`, which reruns only these instead of all ~2,300 (hours on 2 cores).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import KILLED, ROOT, results, scope  # noqa: E402


def refresh_mutants() -> None:
    from contextlib import redirect_stdout

    from mutmut import __main__ as mutmut

    os.chdir(ROOT)
    with redirect_stdout(sys.stderr):  # mutmut prints every file it copies; stdout carries only the names
        _generate(mutmut)


def _generate(mutmut) -> None:
    mutmut.set_mutant_under_test("mutant_generation")
    Path("mutants").mkdir(exist_ok=True)
    mutmut.copy_src_dir()
    mutmut.copy_also_copy_files()
    mutmut.setup_source_paths()
    mutmut.create_mutants(os.cpu_count() or 2)


def main() -> None:
    import fnmatch
    import tomllib

    refresh_mutants()
    equivalent = tomllib.loads((ROOT / "mutation" / "equivalent.toml").read_text())
    patterns = scope()
    for name, code in sorted(results().items()):
        if any(fnmatch.fnmatchcase(name, p) for p in patterns) and code not in KILLED \
                and name not in equivalent:
            print(name)


if __name__ == "__main__":
    main()
