"""Figures read: sizes named on the axis, one axis title per figure."""

import pandas as pd

from optical_core.plots import accuracy_figure, gain_figure, size_legend


def table(langs=("hau", "swa", "yor")):
    rows = []
    for lang in langs:
        for layers, params in ((1, 1.92e6), (2, 3.7e6), (12, 21.4e6)):
            for method in ("kd", "ot"):
                rows.append({"lang": lang, "layers": layers, "params_non_embedding": params, "method": method,
                             "metric": "mrr@10", "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4, "gain": 0.1,
                             "gain_ci_low": 0.0, "gain_ci_high": 0.2})
    return pd.DataFrame(rows)


def test_size_axes_name_the_students_and_their_parameter_counts():
    gain = gain_figure(table().drop_duplicates(["lang", "layers"]))
    assert list(gain.layout.xaxis.ticktext) == ["L1<br>1.92M", "L2<br>3.7M", "L12<br>21.4M"]
    assert list(gain.layout.xaxis.tickvals) == [1.92e6, 3.7e6, 21.4e6]
    facets = accuracy_figure(table())
    assert list(facets.layout.xaxis.ticktext) == ["L1", "L2", "L12"]  # narrow panels: names; counts in the title
    assert size_legend(table(), "params_non_embedding") == "L1 1.92M, L2 3.7M, L12 21.4M"


def test_a_faceted_figure_has_one_x_axis_title_not_one_per_panel():
    facets = accuracy_figure(table())
    titles = [facets.layout[f"xaxis{'' if i == 1 else i}"].title.text for i in (1, 2, 3)]
    assert [t is not None for t in titles] == [False, True, False] and "L12 21.4M" in titles[1]
