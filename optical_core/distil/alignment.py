"""The token alignment of one sentence pair: the OT plan between a student's LR tokens and the
teacher's English tokens, the cost matrix it was solved on, and the most-aligned token pairs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from optical_core.data.bitext import training_bitext
from optical_core.distil.objective import Objective, TeacherBatch, build_objective
from optical_core.distil.ot import plan_sharpness
from optical_core.models.encoders import Encoder
from optical_core.settings import TrainConfig


@dataclass(frozen=True)
class Alignment:
    lr_tokens: list[str]
    en_tokens: list[str]
    plan: np.ndarray  # [n_lr, n_en], sums to 1
    cost: np.ndarray  # [n_lr, n_en]
    transport_cost: float
    sharpness: float = float("nan")  # KL(P || a b^T) / log min(n, m)
    dropped_tokens: tuple[int, int] = (0, 0)  # (LR, English) content tokens cut by max_length

    @property
    def identical_share(self) -> tuple[float, float, int]:
        return identical_token_share(self.plan, self.lr_tokens, self.en_tokens)

    def top_pairs(self, k: int = 15) -> pd.DataFrame:
        flat = np.argsort(-self.plan, axis=None)[:k]
        rows = [dict(lr_token=self.lr_tokens[i], en_token=self.en_tokens[j], mass=float(self.plan[i, j]),
                     share_of_lr_token=float(self.plan[i, j] / max(self.plan[i].sum(), 1e-12)),
                     cost=float(self.cost[i, j]), lr_position=int(i), en_position=int(j))
                for i, j in zip(*np.unravel_index(flat, self.plan.shape))]
        return pd.DataFrame(rows)


def _content_tokens(encoder: Encoder, text: str, max_length: int):
    batch = encoder.tokenize([text], max_length)
    keep = batch.content_mask[0].bool()
    tokens = encoder.tokenizer.convert_ids_to_tokens(batch.input_ids[0][keep].tolist())
    with encoder.lock:
        full = len(encoder.tokenizer(encoder.prefix + text, add_special_tokens=False)["input_ids"])
    return batch, keep, tokens, full - len(tokens)


@torch.no_grad()
def align_pair(student: Encoder, teacher: Encoder, lr_text: str, en_text: str, objective: Objective,
               max_length: int) -> Alignment:
    """The OT problem `objective` solves in training (cost, marginals, epsilon, iterations), for one pair.

    For a KD run the objective's OT settings are still defined (the config's defaults): the plan is then
    an inspection of the student's token space, not something its training optimised.
    """
    if not lr_text.strip() or not en_text.strip():
        raise ValueError("both sentences must be non-empty")
    s_batch, s_keep, lr_tokens, lr_dropped = _content_tokens(student, lr_text, max_length)
    t_batch, t_keep, en_tokens, en_dropped = _content_tokens(teacher, en_text, max_length)
    s_vec = student.token_vectors(s_batch)
    t_vec = teacher.token_vectors(t_batch)[0][t_keep][None]
    t_ids = t_batch.input_ids[0][t_keep][None]
    teacher_side = TeacherBatch(t_vec, torch.ones(t_ids.shape, dtype=torch.bool), t_ids, t_vec.mean(1))
    out = objective.transport(s_vec, s_batch, teacher_side)
    keep = s_keep.nonzero().squeeze(1)  # the student's content tokens (specials carry no mass)
    P, C = out.plan[0][keep], out.cost[0][keep]
    sharpness = plan_sharpness(out.plan, out.a, out.b)[0].item()
    return Alignment(lr_tokens, en_tokens, P.cpu().numpy(), C.cpu().numpy(), float((P * C).sum()), sharpness,
                     (lr_dropped, en_dropped))


def run_objective(config: TrainConfig, student: Encoder, teacher: Encoder, reg: float | None = None) -> Objective:
    """The objective a run of `config` trained with (its idf tables rebuilt from the run's own bitext),
    optionally at another epsilon. For a KD run: its config's OT settings, for inspection."""
    loss = replace(config.loss, method="ot", reg=config.loss.reg if reg is None else reg)
    bitext = training_bitext(config.lang, config.budget.n_pairs)[0] if loss.marginals == "idf" else None
    return build_objective(loss, student, teacher, bitext)


def _word(token: str) -> str:
    """A vocabulary piece as a plain lower-case word: no '▁' / '##' markers."""
    return token.replace("▁", "").replace("##", "").casefold()


def identical_token_share(plan: np.ndarray, lr_tokens: list[str], en_tokens: list[str]) -> tuple[float, float, int]:
    """Alignment quality of one plan [n_lr, n_en]: for each LR token whose word also occurs among the English
    tokens (names, numbers, loanwords; at least 2 letters or digits), the share of its plan mass that lands
    on an identical English token. Returns (mean share, the share an independent plan would give, tokens)."""
    en_words = [_word(t) for t in en_tokens]
    col_mass = plan.sum(0)
    shares, chances = [], []
    for i, token in enumerate(lr_tokens):
        word = _word(token)
        if len(word) < 2 or not word.isalnum():
            continue
        match = [j for j, w in enumerate(en_words) if w == word]
        row = plan[i].sum()
        if not match or row <= 0:
            continue
        shares.append(plan[i, match].sum() / row)
        chances.append(col_mass[match].sum() / col_mass.sum())
    if not shares:
        return float("nan"), float("nan"), 0
    return float(np.mean(shares)), float(np.mean(chances)), len(shares)


@dataclass(frozen=True)
class AlignmentScores:
    """Plan diagnostics over a fixed set of pairs (see `alignment_scores`)."""

    identical_share: float  # mean share of a shared token's mass on its identical counterpart
    identical_chance: float  # the same for the independent plan a b^T
    shared_tokens: int
    plan_sharpness: float  # mean KL(P || a b^T) / log min(n, m): 0 = blurred, ~1 = one-to-one


@torch.no_grad()
def alignment_scores(student: Encoder, teacher: Encoder, objective: Objective, lr_texts: list[str],
                     en_texts: list[str], max_length: int) -> AlignmentScores:
    """How well the plans of `objective` align `student`'s LR tokens with the teacher's English tokens,
    averaged over the given pairs (e.g. a fixed slice of the dev split)."""
    device = next(student.parameters()).device
    s_batch = student.tokenize(lr_texts, max_length).to(device)
    t_batch = teacher.tokenize(en_texts, max_length).to(device)
    t_vec = teacher.token_vectors(t_batch).float()
    keep = t_batch.content_mask.bool()
    lengths = keep.sum(1)
    width = int(lengths.max())
    t_tokens = torch.zeros(len(en_texts), width, t_vec.shape[-1], device=device)
    t_ids = torch.zeros(len(en_texts), width, dtype=torch.long, device=device)
    for k in range(len(en_texts)):
        t_tokens[k, : lengths[k]] = t_vec[k][keep[k]]
        t_ids[k, : lengths[k]] = t_batch.input_ids[k][keep[k]]
    t_mask = torch.arange(width, device=device)[None] < lengths[:, None]
    out = objective.transport(student.token_vectors(s_batch).float(), s_batch,
                              TeacherBatch(t_tokens, t_mask, t_ids, t_tokens.mean(1)))
    sharp = plan_sharpness(out.plan, out.a, out.b).mean().item()
    shares, chances, count = [], [], 0
    for k in range(len(lr_texts)):
        rows = s_batch.content_mask[k].bool()
        lr_tokens = student.tokenizer.convert_ids_to_tokens(s_batch.input_ids[k][rows].tolist())
        en_tokens = teacher.tokenizer.convert_ids_to_tokens(t_ids[k, : lengths[k]].tolist())
        plan = out.plan[k][rows][:, : lengths[k]].cpu().numpy()
        share, chance, n = identical_token_share(plan, lr_tokens, en_tokens)
        if n:
            shares.append(share * n)
            chances.append(chance * n)
            count += n
    return AlignmentScores(sum(shares) / count if count else float("nan"),
                           sum(chances) / count if count else float("nan"), count, sharp)
