"""The planted bugs of issue 19, each applied to a copy of the tree, and the tests that catch it.

Each entry is a one-line bug a reviewer planted (the issue lists them): the file, the text replaced, the
replacement, and the tests expected to fail. The script checks the tests pass on the unchanged copy, then
applies one bug at a time and prints which of the named tests fail. Run: python mutation/planted.py
(about 5 minutes on 2 cores). Exit status 1 if any bug goes uncaught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T = "tests/test_mutation_targets.py::"

PLANTED = [
    ("cosine cost's sign flipped (1 + cos)", "optical_core/distil/ot.py",
     "return 1.0 - F.normalize(s, dim=-1)", "return 1.0 + F.normalize(s, dim=-1)",
     [T + "test_cosine_cost_is_one_minus_cosine_of_the_token_vectors",
      T + "test_ot_loss_prefers_the_aligned_student_and_is_near_zero_for_it"]),
    ("OT fed the attention mask (specials included) instead of the content mask", "optical_core/distil/objective.py",
     "self.ot(student_tokens, student.content_mask,", "self.ot(student_tokens, student.attention_mask,",
     [T + "test_objective_transports_content_tokens_only_and_adds_the_weighted_kd_term"]),
    ("KD target L2-normalised", "optical_core/distil/train.py",
     "embeddings.append(mean_pool(vectors, batch.attention_mask).cpu())",
     "embeddings.append(torch.nn.functional.normalize(mean_pool(vectors, batch.attention_mask), dim=-1).cpu())",
     [T + "test_teacher_targets_are_raw_mean_pools_and_content_tokens"]),
    ("idf marginals switched off", "optical_core/distil/objective.py",
     'idf = self.config.marginals == "idf"', "idf = False",
     [T + "test_idf_marginals_weight_each_content_token_by_its_ids_idf"]),
    ("KD term of OT+KD switched off", "optical_core/distil/objective.py",
     "loss = out.loss + self.config.kd_weight * kd() if self.config.kd_weight else out.loss", "loss = out.loss",
     [T + "test_objective_transports_content_tokens_only_and_adds_the_weighted_kd_term"]),
    ("permutation test made unpaired", "optical_core/evaluate/significance.py",
     'permutation_type="samples"', 'permutation_type="independent"',
     [T + "test_sign_flip_test_is_exact_paired_and_two_sided"]),
    ("pairwise difference computed as B - A", "optical_core/evaluate/significance.py",
     "diff = a - b", "diff = b - a",
     [T + "test_sign_flip_test_is_exact_paired_and_two_sided",
      T + "test_significance_is_reproducible_and_uses_its_arguments"]),
    ("confidence level 90% instead of 95%", "optical_core/evaluate/significance.py",
     "level: float = 0.95", "level: float = 0.90",
     [T + "test_bootstrap_interval_has_the_level_it_claims",
      T + "test_significance_is_reproducible_and_uses_its_arguments"]),
    ("one-sided instead of two-sided test", "optical_core/evaluate/significance.py",
     'alternative="two-sided"', 'alternative="greater"',
     [T + "test_sign_flip_test_is_exact_paired_and_two_sided"]),
    ("ranking depth off by one", "optical_core/evaluate/retrieval.py",
     "k = min(depth, len(dids))\n    top", "k = min(depth - 1, len(dids))\n    top",
     [T + "test_rank_returns_the_top_documents_by_cosine_in_order"]),
    ("NTREX de-duplication skipped", "optical_core/data/bitext.py",
     "        if normalise(s) in exact or normalise(t) in exact:", "        if False:",
     [T + "test_dedup_drops_exact_and_ngram_overlaps_on_either_side",
      T + "test_dedup_counts_every_drop_and_keeps_the_bitexts_labels"]),
    ("trimmed embedding rows not re-indexed", "optical_core/models/vocab.py",
     "new.weight.data.copy_(old[index])", "new.weight.data.copy_(old[: len(kept)])",
     [T + "test_trimming_reindexes_rows_when_pieces_in_the_middle_are_dropped"]),
    ("OT marginals swapped", "optical_core/distil/losses.py",
     "a, b = marginals(student_mask, student_weights), marginals(teacher_mask, teacher_weights)",
     "b, a = marginals(student_mask, student_weights), marginals(teacher_mask, teacher_weights)",
     [T + "test_sinkhorn_divergence_output_carries_the_cross_plan_and_its_inputs",
      T + "test_idf_marginals_weight_each_content_token_by_its_ids_idf"]),
    ("per_query_metrics with one metric (the latent IndexError, fix removed)", "optical_core/evaluate/retrieval.py",
     "    if not isinstance(scores, dict):", "    if False:",
     ["tests/test_retrieval.py"]),
]


def copy_tree(dest: Path) -> None:
    for name in ("optical_core", "tests", "configs"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pytest.ini", "pyproject.toml"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)


def failing(dest: Path, tests: list[str]) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(dest))
    env.setdefault("OPTICAL_DATA_DIR", str(ROOT.parent / "shared" / "corpora"))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
                         cwd=dest, env=env, capture_output=True, text=True)
    return [line.split()[1].split(" - ")[0] for line in out.stdout.splitlines() if line.startswith("FAILED")]


def main() -> int:
    uncaught = 0
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp)
        copy_tree(dest)
        every = sorted({t for *_, tests in PLANTED for t in tests})
        broken = failing(dest, every)
        if broken:
            print(f"tests fail on the unchanged tree: {broken}")
            return 1
        print("| planted bug | caught by |\n|:--|:--|")
        for what, file, old, new, tests in PLANTED:
            path = dest / file
            source = path.read_text(encoding="utf-8")
            if source.count(old) != 1:
                print(f"| {what} | (the text to replace is not in {file} exactly once: update this list) |")
                uncaught += 1
                continue
            path.write_text(source.replace(old, new), encoding="utf-8")
            try:
                caught = failing(dest, tests)
            finally:
                path.write_text(source, encoding="utf-8")
            uncaught += not caught
            names = ", ".join(f"`{c.split('::')[-1]}`" for c in caught)
            print(f"| {what} | {names or '**not caught**'} |")
    return 1 if uncaught else 0


if __name__ == "__main__":
    sys.exit(main())
