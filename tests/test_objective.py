"""The objective is built once from the loss config; training and the Alignment page solve the same plan."""

import torch

from optical_core.data.bitext import training_bitext
from optical_core.distil.alignment import align_pair, run_objective
from optical_core.distil.objective import build_objective
from optical_core.distil.train import teacher_targets
from optical_core.models.students import build_student
from optical_core.settings import Budget, LossConfig, StudentSpec, TrainConfig


def test_alignment_page_solves_the_plan_training_solved_with_idf_marginals(teacher):
    config = TrainConfig(lang="hau", student=StudentSpec("minilm", 1),
                         loss=LossConfig(method="ot", marginals="idf", reg=0.1, sinkhorn_iters=37),
                         budget=Budget(n_pairs=16, max_length=32))
    bitext, _ = training_bitext(config.lang, config.budget.n_pairs)
    student = build_student(config.student, teacher.hidden_size, bitext.source + bitext.target).encoder.eval()
    objective = build_objective(config.loss, student, teacher, bitext)
    i = 3
    with torch.no_grad():  # the training step's view of pair i
        batch = student.tokenize([bitext.source[i]], config.budget.max_length)
        targets = teacher_targets(teacher, bitext.target, config.budget.max_length, "cpu")
        trained = objective(student.token_vectors(batch), batch, targets.collate([i], "cpu")).transport
    shown = align_pair(student, teacher, bitext.source[i], bitext.target[i], run_objective(config, student, teacher),
                       config.budget.max_length)
    content = batch.content_mask[0].bool()
    torch.testing.assert_close(torch.from_numpy(shown.plan), trained.plan[0][content])
    # idf marginals, not uniform ones: the rows of the plan carry unequal mass
    rows = shown.plan.sum(1)
    assert rows.max() / rows.min() > 1.2
    uniform = align_pair(student, teacher, bitext.source[i], bitext.target[i],
                         build_objective(LossConfig(method="ot"), student, teacher, bitext), config.budget.max_length)
    assert abs(uniform.plan.sum(1).max() / uniform.plan.sum(1).min() - 1) < 1e-3


def test_ot_plus_kd_is_the_sum_of_its_terms(teacher):
    bitext, _ = training_bitext("hau", 8)
    student = build_student(StudentSpec("minilm", 1), teacher.hidden_size, bitext.source + bitext.target).encoder
    targets = teacher_targets(teacher, bitext.target, 32, "cpu").collate(list(range(8)), "cpu")
    batch = student.tokenize(bitext.source, 32)
    with torch.no_grad():
        tokens = student.token_vectors(batch)
        kd = build_objective(LossConfig(method="kd"), student, teacher, bitext)(tokens, batch, targets)
        ot = build_objective(LossConfig(method="ot"), student, teacher, bitext)(tokens, batch, targets)
        both = build_objective(LossConfig(method="ot", kd_weight=3.0), student, teacher, bitext)(tokens, batch, targets)
    assert kd.transport is None and ot.transport is not None
    torch.testing.assert_close(both.loss, ot.loss + 3.0 * kd.loss)
    assert kd.loss > 0 and ot.loss > 0


def test_alignment_says_how_many_tokens_max_length_cut(teacher):
    bitext, _ = training_bitext("hau", 16)
    student = build_student(StudentSpec("minilm", 1), teacher.hidden_size, bitext.source + bitext.target).encoder
    objective = build_objective(LossConfig(method="ot"), student, teacher, bitext)
    long_lr, long_en = " ".join(bitext.source[:3]), " ".join(bitext.target[:3])
    full = align_pair(student, teacher, long_lr, long_en, objective, 256)
    cut = align_pair(student, teacher, long_lr, long_en, objective, 12)
    assert full.dropped_tokens == (0, 0)
    assert cut.dropped_tokens == (len(full.lr_tokens) - len(cut.lr_tokens), len(full.en_tokens) - len(cut.en_tokens))
    assert len(cut.lr_tokens) == 10 and cut.dropped_tokens[0] > 0  # 12 minus [CLS] and [SEP]
