"""The answer in one minute: three generated sentences (regime first) and the README block written from them."""

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from optical_core.study.analysis import language_level_slope, language_level_slopes
from optical_core.study.answer import (
    README_END,
    README_START,
    language_slope,
    readme_answer,
    replace_readme_answer,
    short_answer,
)

PROJECT = Path(__file__).resolve().parent.parent


def crafted(kd_learned: bool, slopes_by_language=(0.1, 0.2, 0.3), pooled=(0.2, 0.05, 0.35)):
    """Two sizes x three languages; OT - KD -0.1 at L1 and 0.0 at L12 (CI spanning zero there)."""
    gains, accuracy = [], []
    for layers, params, diff in ((1, 2e6, -0.1), (12, 2e7, 0.0)):
        for lang in ("aaa", "bbb", "ccc"):
            gains.append(dict(family="me5", layers=layers, lang=lang, kd_above_floor=kd_learned, abs_diff=diff,
                              abs_ci_low=diff - 0.05, abs_ci_high=diff + 0.05))
            for method, mean in (("untrained", 0.2), ("kd", 0.3 if kd_learned else 0.2), ("ot", 0.3 + diff)):
                accuracy.append(dict(family="me5", layers=layers, lang=lang, method=method, mean=mean,
                                     params_non_embedding=params))
    slopes = [dict(family="me5", y="abs_diff", scope="pooled", slope=pooled[0], ci_low=pooled[1], ci_high=pooled[2],
                   n=6)]
    slopes += [dict(family="me5", y="abs_diff", scope=lang, slope=v, ci_low=0, ci_high=0, n=2)
               for lang, v in zip(("aaa", "bbb", "ccc"), slopes_by_language)]
    return SimpleNamespace(metric="mrr@10", gains=pd.DataFrame(gains), accuracy=pd.DataFrame(accuracy),
                           slopes=pd.DataFrame(slopes), language_slopes=None, curves=None, provenance="crafted",
                           baselines=pd.DataFrame([dict(lang="aaa", method="bm25", value=0.5)]))


def test_the_language_level_interval_is_a_t_interval_over_the_languages():
    got = language_level_slope(crafted(True).slopes, "me5")
    # mean 0.2, sd 0.1, se 0.1 / sqrt(3), t(0.975, 2 df) = 4.3027
    assert got["slope"] == pytest.approx(0.2)
    assert got["ci_low"] == pytest.approx(0.2 - 4.302653 * 0.1 / 3 ** 0.5, abs=1e-5)
    assert got["ci_high"] == pytest.approx(0.2 + 4.302653 * 0.1 / 3 ** 0.5, abs=1e-5)
    # t = 0.2 / (0.1 / sqrt 3) = 3.464; two-sided p with 2 df = 1 - t / sqrt(t^2 + 2) = 0.0742
    assert got["p_value"] == pytest.approx(0.0742, abs=5e-4) and (got["k"], got["low"], got["high"]) == (3, 0.1, 0.3)
    assert language_level_slope(crafted(True).slopes.iloc[:3], "me5") is None  # two languages: no interval


def test_languages_with_one_and_the_same_slope_have_no_spread():
    same = crafted(True, slopes_by_language=(0.25, 0.25, 0.25)).slopes  # exact in binary: a spread of 0
    assert language_level_slope(same, "me5")["p_value"] == 0.0  # a non-zero slope in every language
    flat = language_level_slope(same.assign(slope=0.0), "me5")
    assert (flat["slope"], flat["ci_low"], flat["ci_high"], flat["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_language_level_slopes_one_row_per_family_and_quantity_in_order():
    """Families and quantities given out of order; each row is its own quantity's interval (gain's slopes are
    ten times abs_diff's); a family with two languages has none; an empty table keeps its columns."""
    slopes = pd.concat([crafted(True).slopes.assign(family=family, y=y, slope=lambda t: t.slope * scale)
                        for family in ("zz", "me5") for y, scale in (("gain", 10), ("abs_diff", 1))]
                       + [crafted(True).slopes.iloc[:3].assign(family="two")])
    table = language_level_slopes(slopes)
    columns = ["family", "y", "slope", "ci_low", "ci_high", "p_value", "k", "low", "high"]
    assert table.columns.tolist() == columns
    assert table[["family", "y"]].values.tolist() == [["me5", "abs_diff"], ["me5", "gain"], ["zz", "abs_diff"],
                                                      ["zz", "gain"]]
    assert table.slope.tolist() == pytest.approx([0.2, 2.0, 0.2, 2.0])
    assert table.ci_low.tolist() == pytest.approx([0.2 - 0.248414, 2 - 2.48414] * 2, abs=1e-5)
    assert language_level_slopes(slopes.iloc[:0]).columns.tolist() == columns


def test_the_answer_reads_the_published_language_level_slope_when_there_is_one():
    summary = crafted(True)
    table = language_level_slopes(summary.slopes)
    assert list(table[["family", "y", "k"]].itertuples(index=False, name=None)) == [("me5", "abs_diff", 3)]
    assert language_slope(summary, "me5") == pytest.approx(language_level_slope(summary.slopes, "me5"))
    summary.language_slopes = table.assign(ci_low=-0.987)  # the published row, not a recomputation
    assert "the interval is -0.987 to" in short_answer(summary)[2]
    summary.language_slopes = table.iloc[:0]  # published, and too few languages for it
    assert language_slope(summary, "me5") is None and len(short_answer(summary)) == 2


def test_three_sentences_regime_first_trend_with_its_interval_then_the_caveat():
    regime, trend, caveat = short_answer(crafted(True))
    assert regime.startswith("Students learn: KD beats its start in 6 of 6 me5 size-language cells")
    assert "0.200 at the start, 0.300 for KD and 0.300 for OT, against 0.500 for BM25" in regime
    assert trend.startswith("OT minus KD rises by +0.200 MRR@10 per 10x student parameters (95% CI +0.050 to +0.350")
    assert "from -0.100 at 2.0M to +0.000 at 20.0M, where its CI includes zero in 3 of 3 languages: scaling the " \
           "student closes OT's deficit to KD without making OT win." in trend
    assert "differs by language (+0.100 to +0.300 per 10x)" in caveat and "(t, 2 df, p = 0.074)" in caveat


def test_a_cell_without_a_scored_start_is_not_counted_as_learned():
    summary = crafted(True)
    summary.gains["kd_above_floor"] = [True, True, None, True, True, float("nan")]  # unknown: not learned
    assert short_answer(summary)[0].startswith("Students learn, though not everywhere: KD beats its start in 4 of 6")


def test_a_study_whose_students_did_not_learn_says_so_first():
    regime, trend, _ = short_answer(crafted(False, pooled=(0.01, -0.02, 0.04)))
    assert regime.startswith("The students did not learn at this budget: KD beats its start in none of the 6")
    assert trend.endswith("no size effect is detectable.")


def test_the_readme_answer_is_the_one_publish_generates_from_the_committed_study():
    from optical_core.study.summary import load_summary

    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    block = readme_answer(load_summary(PROJECT / "results" / "study"), "results/study")
    assert replace_readme_answer(readme, block) == readme, "run: optical answer --readme README.md"
    assert block.startswith(README_START) and block.endswith(README_END) and block.count("\n- ") == 3
    with pytest.raises(ValueError, match="exactly once"):
        replace_readme_answer("no markers", block)
