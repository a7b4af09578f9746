"""Plotly figures of the study. Pure functions: tables in, figures out."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

# one colour per objective, in every figure
METHOD_COLOURS = {"kd": "#1f77b4", "ot": "#d62728", "ot-kd": "#2ca02c", "untrained": "#7f7f7f"}
AXIS_LABELS = {"params_non_embedding": "non-embedding parameters", "params_total": "total parameters"}


def _band(x, low, high, colour, name, legendgroup) -> dict:
    """A 95% CI band (a closed polygon); a plain trace dict: plotly validates it once, when it is added."""
    return dict(type="scatter", x=list(x) + list(x)[::-1], y=list(high) + list(low)[::-1], fill="toself",
                fillcolor=colour, opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False,
                name=f"{name} 95% CI", legendgroup=legendgroup)


def size_ticks(table: pd.DataFrame, axis: str, counts: bool = True) -> dict:
    """Log-axis ticks at the students' own sizes, named: "L2<br>3.7M" (a bare log axis reads "2 3 4 ... 10M").
    Without `counts` (narrow panels) the ticks are the names alone; `size_legend` gives the counts."""
    sizes = table[[axis, "layers"]].drop_duplicates(axis).sort_values(axis) if "layers" in table else None
    if sizes is None or sizes.empty:
        return {}
    text = [f"L{int(r.layers)}" + (f"<br>{_si(getattr(r, axis))}" if counts else "") for r in sizes.itertuples()]
    return dict(tickvals=list(sizes[axis]), ticktext=text, tickangle=0)


def size_legend(table: pd.DataFrame, axis: str) -> str:
    """ "L1 1.92M, L2 3.7M, ...": the parameter count of each named size."""
    if "layers" not in table or table.empty:
        return ""
    sizes = table[[axis, "layers"]].drop_duplicates(axis).sort_values(axis)
    return ", ".join(f"L{int(r.layers)} {_si(getattr(r, axis))}" for r in sizes.itertuples())


def _si(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def accuracy_figure(acc: pd.DataFrame, axis: str = "params_non_embedding", facet_by_lang: bool = True,
                    title: str | None = None) -> go.Figure:
    """Metric vs student size, one line per method with a 95% CI band, a panel per language."""
    langs = sorted(acc.lang.unique()) if facet_by_lang else ["all"]
    fig = make_subplots(rows=1, cols=len(langs), subplot_titles=langs, shared_yaxes=True)
    for c, lang in enumerate(langs, start=1):
        sub = acc if lang == "all" else acc[acc.lang == lang]
        for method, g in sub.groupby("method"):
            g = g.groupby(axis, as_index=False)[["mean", "ci_low", "ci_high"]].mean().sort_values(axis)
            colour = METHOD_COLOURS.get(method, "#2ca02c")
            fig.add_trace(_band(g[axis], g.ci_low, g.ci_high, colour, method, method), row=1, col=c)
            fig.add_trace(go.Scatter(x=g[axis], y=g["mean"], mode="lines+markers", name=method, legendgroup=method,
                                     showlegend=c == 1, line=dict(color=colour),
                                     hovertemplate=f"{method}<br>%{{x:.3s}} params<br>%{{y:.3f}}<extra></extra>"),
                          row=1, col=c)
        middle = c == (len(langs) + 1) // 2  # one axis title under the middle panel: repeated ones overlap
        label = f"{AXIS_LABELS.get(axis, axis)} ({size_legend(acc, axis)})".replace(" ()", "")
        fig.update_xaxes(type="log", title_text=label if middle else None,
                         **size_ticks(sub, axis, counts=len(langs) == 1), row=1, col=c)
    metric = acc.metric.iloc[0] if len(acc) else ""
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(title=title or f"{metric} vs student size", height=400, margin=dict(t=60, l=40, r=20, b=60))
    return fig


def gain_figure(gains: pd.DataFrame, axis: str = "params_non_embedding", y: str = "gain",
                title: str | None = None) -> go.Figure:
    """OT-vs-KD gain vs student size: one line per language with 95% CI error bars, zero marked."""
    low, high = ("gain_ci_low", "gain_ci_high") if y == "gain" else ("abs_ci_low", "abs_ci_high")
    fig = go.Figure()
    for i, (lang, g) in enumerate(gains.sort_values(axis).groupby("lang")):
        fig.add_trace(go.Scatter(
            x=g[axis], y=g[y], mode="lines+markers", name=lang, line=dict(color=qualitative.D3[i % 10]),
            error_y=dict(type="data", symmetric=False, array=g[high] - g[y], arrayminus=g[y] - g[low]),
            hovertemplate=f"{lang}<br>%{{x:.3s}} params<br>{y} %{{y:.3f}}<extra></extra>"))
    pooled = gains.groupby(axis, as_index=False)[y].mean()
    fig.add_trace(go.Scatter(x=pooled[axis], y=pooled[y], mode="lines", name="mean over languages",
                             line=dict(color="black", dash="dash", width=3)))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(type="log", title_text=AXIS_LABELS.get(axis, axis), **size_ticks(gains, axis))
    fig.update_yaxes(title_text="(OT - KD) / KD" if y == "gain" else "OT - KD",
                     tickformat=".0%" if y == "gain" else None)
    metric = gains.metric.iloc[0] if len(gains) else ""
    fig.update_layout(title=title or f"OT-vs-KD gain in {metric} vs student size", height=420,
                      margin=dict(t=60, l=40, r=20, b=40))
    return fig


def size_effect_figure(along: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Does the size effect change with the training budget: the pooled slope of (objective - KD) on
    log10(non-embedding params) at each evaluated step, one line per objective with its 95% CI band."""
    fig = go.Figure()
    pooled = along[along.scope == "pooled"].dropna(subset=["slope"]).sort_values("step") if len(along) else along
    for i, (method, g) in enumerate(pooled.groupby("a", sort=True) if len(pooled) else []):
        colour = METHOD_COLOURS.get(method, qualitative.D3[(i + 2) % 10])
        name = f"{method} minus kd"
        fig.add_trace(_band(g.step, g.ci_low, g.ci_high, colour, name, name))
        fig.add_trace(go.Scatter(x=g.step, y=g.slope, mode="lines+markers", name=name, legendgroup=name,
                                 line=dict(color=colour),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>slope %{{y:+.3f}} per 10x<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="slope per 10x non-embedding params")
    fig.update_layout(title=title or "Size effect along training: slope of (objective - KD) on log10(size)",
                      height=380, margin=dict(t=60, l=40, r=20, b=40))
    return fig


def learning_curve_figure(curves: pd.DataFrame, baselines: dict[str, float] | None = None,
                          title: str | None = None) -> go.Figure:
    """Metric vs training step, one panel per student size, one line per method with a 95% CI band;
    steps where a method's query embeddings collapsed are marked with an x; baselines as dotted lines."""
    sizes = sorted(curves[["family", "layers"]].drop_duplicates().itertuples(index=False))
    names = [f"{f}-L{n}" for f, n in sizes]
    fig = make_subplots(rows=1, cols=len(sizes), subplot_titles=names, shared_yaxes=True)
    methods = sorted(curves.method.unique())
    # one line per size and method: the mean over languages at each step
    lines = dict(list(curves.groupby(["family", "layers", "method", "step"], as_index=False).agg(
        mean=("mean", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
        collapsed=("collapsed", "any")).groupby(["family", "layers", "method"]))) if len(curves) else {}
    traces, columns, shapes, notes = [], [], [], []
    for c, (family, layers) in enumerate(sizes, start=1):
        for i, method in enumerate(methods):
            g = lines.get((family, layers, method))
            if g is None:
                continue
            g = g.sort_values("step")
            colour = METHOD_COLOURS.get(method, qualitative.D3[(i + 2) % 10])
            traces += [_band(g.step, g.ci_low, g.ci_high, colour, method, method),
                       dict(type="scatter", x=g.step.tolist(), y=g["mean"].tolist(), mode="lines+markers", name=method,
                            legendgroup=method, showlegend=c == 1, line=dict(color=colour),
                            marker=dict(symbol=["x" if x else "circle" for x in g.collapsed], size=9),
                            hovertemplate=f"{method}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>")]
            columns += [c, c]
        axis = "" if c == 1 else str(c)  # a panel's baselines span its x domain at their y value
        for name, value in (baselines or {}).items():
            shapes.append(dict(type="line", xref=f"x{axis} domain", yref=f"y{axis}", x0=0, x1=1, y0=value, y1=value,
                               line=dict(color="grey", dash="dot", width=1)))
            notes.append(dict(xref=f"x{axis} domain", yref=f"y{axis}", x=0, y=value, text=name, showarrow=False,
                              xanchor="left", yanchor="bottom"))
    # one call for all traces, shapes and notes: added one by one, plotly re-walks every subplot each time
    fig.add_traces(traces, rows=[1] * len(traces), cols=columns)
    fig.update_xaxes(title_text="training step")
    metric = curves.metric.iloc[0] if len(curves) else ""
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(title=title or f"{metric} along training (x: collapsed, query cosine > 0.9)", height=400,
                      margin=dict(t=70, l=40, r=20, b=40),
                      **(dict(shapes=shapes, annotations=list(fig.layout.annotations) + notes) if notes else {}))
    return fig


def transport_heatmap(matrix, lr_tokens: list[str], en_tokens: list[str], cost=None, title: str = "",
                      value_name: str = "mass") -> go.Figure:
    """A token-by-token matrix (plan or cost): integer axes with token tick labels, so repeated tokens
    are not merged; hover shows both tokens, the value and (for a plan) the cost."""
    import numpy as np

    z = np.asarray(matrix, dtype=float)
    custom = np.asarray(cost, dtype=float) if cost is not None else np.zeros_like(z)
    hover = "LR %{y}: %{customdata[0]}<br>EN %{x}: %{customdata[1]}<br>" + value_name + " %{z:.4f}"
    if cost is not None:
        hover += "<br>cost %{customdata[2]:.3f}"
    data = np.empty(z.shape + (3,), dtype=object)
    data[..., 0] = np.array(lr_tokens, dtype=object)[:, None]
    data[..., 1] = np.array(en_tokens, dtype=object)[None, :]
    data[..., 2] = custom
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(en_tokens))), y=list(range(len(lr_tokens))), customdata=data,
                               hovertemplate=hover + "<extra></extra>",
                               colorscale="Blues" if value_name == "mass" else "Viridis"))
    fig.update_xaxes(tickvals=list(range(len(en_tokens))), ticktext=en_tokens, tickangle=-60,
                     title_text="English (teacher)")
    fig.update_yaxes(tickvals=list(range(len(lr_tokens))), ticktext=lr_tokens, autorange="reversed",
                     title_text="LR (student)")
    fig.update_layout(title=title, height=max(300, 22 * len(lr_tokens) + 160), margin=dict(t=50, l=80, r=20, b=80))
    return fig


def loss_curve_figure(histories: dict[str, list[dict]], title: str = "Training loss") -> go.Figure:
    fig = go.Figure()
    for name, history in histories.items():
        fig.add_trace(go.Scatter(x=[h["step"] for h in history], y=[h["loss"] for h in history], mode="lines",
                                 name=name))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", height=320, margin=dict(t=50, b=40))
    return fig


def export_figure(fig: go.Figure, path_without_suffix: Path | str, png: bool = True) -> list[Path]:
    """HTML always; PNG through kaleido when a Chrome/Chromium is available (else skipped, said in the return)."""
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = [base.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs="cdn")
    base.with_suffix(".png").unlink(missing_ok=True)  # a failed export must not leave an older figure behind
    if png:
        try:
            _start_image_server()
            with warnings.catch_warnings():  # plotly's note that a running image server ignores its options
                warnings.filterwarnings("ignore", "The kopts argument is ignored", UserWarning)
                fig.write_image(base.with_suffix(".png"), width=1100, height=fig.layout.height or 450, scale=1)
            written.append(base.with_suffix(".png"))
        except Exception:  # kaleido needs a Chrome binary; HTML is the portable export
            pass
    return written


_images = {"blocks": 0, "server": False}  # open `image_server` blocks; whether their browser has started


@contextlib.contextmanager
def image_server():
    """One headless browser for every PNG written inside the block (blocks may nest), started by the first PNG:
    without it kaleido starts one per image (seconds each)."""
    _images["blocks"] += 1
    try:
        yield
    finally:
        _images["blocks"] -= 1
        if _images["blocks"] == 0 and _images["server"]:
            import kaleido

            kaleido.stop_sync_server(silence_warnings=True)
            _images["server"] = False


def _start_image_server() -> None:
    if _images["blocks"] and not _images["server"]:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        _images["server"] = True
