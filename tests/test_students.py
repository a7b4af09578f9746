import pytest

from optical_core.data.bitext import training_bitext
from optical_core.data.clir import load_ntrex
from optical_core.models.students import build_student
from optical_core.settings import LADDERS, StudentSpec, parse_size

H, FF = 384, 1536
LAYER = 4 * (H * H + H) + (H * FF + FF) + (FF * H + H) + 2 * 2 * H  # q k v o, ffn in/out, 2 layer norms
EMBED_LN = 2 * H
PROJECTION = H * H + H


@pytest.mark.parametrize("family,vocab", [("me5", 250037), ("minilm", 30522)])
def test_every_ladder_size_has_the_right_counts(family, vocab):
    for layers in LADDERS[family]:
        s = build_student(StudentSpec(family, layers, trim_vocab=False), 384)
        projection = PROJECTION if family == "me5" else 0
        assert s.params.non_embedding == layers * LAYER + EMBED_LN + projection
        positions = 512 * H
        assert s.params.total == s.params.non_embedding + vocab * H + positions + 2 * H
        assert s.encoder.backbone.config.num_hidden_layers == layers


def test_me5_ladder_spans_more_than_10x_non_embedding_params():
    small = build_student(StudentSpec("me5", 1, trim_vocab=False), 384).params.non_embedding
    large = build_student(StudentSpec("me5", 12, trim_vocab=False), 384).params.non_embedding
    assert large / small > 10


def test_trimming_keeps_every_corpus_piece_and_changes_no_encoding(data_dir):
    bitext, _ = training_bitext("yor", 300, data_dir)
    texts = bitext.source + bitext.target + load_ntrex("yor", data_dir).foreign[:300]
    full = build_student(StudentSpec("me5", 1, trim_vocab=False), 384)
    trimmed = build_student(StudentSpec("me5", 1), 384, vocab_texts=texts)
    assert trimmed.params.vocab_size < 20000 < full.params.vocab_size
    for text in texts[::7]:
        a = full.encoder.tokenizer(text)["input_ids"]
        b = trimmed.encoder.tokenizer(text)["input_ids"]
        assert full.encoder.tokenizer.convert_ids_to_tokens(a) == trimmed.encoder.tokenizer.convert_ids_to_tokens(b)
    # the embedding rows moved with their pieces
    a = full.encoder.tokenizer(texts[0])["input_ids"]
    b = trimmed.encoder.tokenizer(texts[0])["input_ids"]
    full_rows = full.encoder.backbone.get_input_embeddings().weight[a]
    trimmed_rows = trimmed.encoder.backbone.get_input_embeddings().weight[b]
    assert (full_rows == trimmed_rows).all()


def test_minilm_family_trims_wordpiece_too(data_dir):
    bitext, _ = training_bitext("zul", 100, data_dir)
    s = build_student(StudentSpec("minilm", 1), 384, vocab_texts=bitext.source + bitext.target)
    assert s.params.vocab_size < 30522
    assert s.encoder.projection is None  # the teacher's own space


def test_local_checkpoint_family_and_errors(tmp_path):
    from optical_core.errors import CheckpointError
    from optical_core.models.encoders import teacher_dir

    s = build_student(StudentSpec("hf", 2, str(teacher_dir()), trim_vocab=False), 384)
    assert s.encoder.backbone.config.num_hidden_layers == 2
    with pytest.raises(CheckpointError, match="config.json is missing"):
        build_student(StudentSpec("hf", 2, str(tmp_path)), 384)
    with pytest.raises(ValueError, match="ladder has sizes"):
        StudentSpec("minilm", 12)
    assert parse_size("L4") == 4
    with pytest.raises(ValueError, match="look like L2"):
        parse_size("4 layers")
