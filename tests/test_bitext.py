import pytest

from optical_core.data.bitext import (
    Bitext,
    load_aligned_files,
    load_mafand,
    load_tsv,
    normalise,
    remove_heldout_overlap,
    training_bitext,
)
from optical_core.data.clir import heldout_texts, load_ntrex
from optical_core.data.corpora import find_data_dir, read_lines
from optical_core.errors import DataError

from .conftest import write

# Pairs per split from ../shared/corpora/README.md
README_COUNTS = {"swa": 30782, "yor": 6644, "ibo": 6998, "hau": 3098, "zul": 3500, "amh": 899 + 1037, "xho": 486 + 1002}


@pytest.mark.parametrize("lang,count", README_COUNTS.items())
def test_mafand_counts_match_the_shared_readme(data_dir, lang, count):
    bitext = load_mafand(lang, data_dir)
    assert len(bitext) == count
    assert all(s.strip() and t.strip() for s, t in zip(bitext.source[:200], bitext.target[:200]))


def test_languages_without_train_split_use_dev_and_test(data_dir):
    assert "dev+test" in load_mafand("amh", data_dir).notes[0]


def test_training_bitext_never_contains_ntrex_text(data_dir):
    bitext, report = training_bitext("swa", None, data_dir)
    heldout = {normalise(t) for t in heldout_texts("swa", data_dir)}
    assert not any(normalise(s) in heldout or normalise(t) in heldout for s, t in zip(bitext.source, bitext.target))
    assert report.kept == len(bitext) and report.kept + report.dropped == README_COUNTS["swa"]


def test_overlap_filter_drops_exact_and_ngram_matches():
    heldout = ["The quick brown fox jumps over the lazy dog near the river bank today."]
    bitext = Bitext("xx", ["a", "b", "c"], [
        "the QUICK brown fox jumps over the lazy dog near the river bank today",  # exact after normalising
        "Yesterday the quick brown fox jumps over the lazy dog near a farm.",  # shares an 8-gram
        "Something else entirely, with no long overlap at all."])
    clean, report = remove_heldout_overlap(bitext, heldout, ngram=8)
    assert clean.target == ["Something else entirely, with no long overlap at all."]
    assert (report.dropped_exact, report.dropped_ngram) == (1, 1)


def test_unknown_language_names_what_is_available(data_dir):
    with pytest.raises(DataError, match="no MAFAND-MT bitext for language 'qqq'.*available: .*swa"):
        load_mafand("qqq", data_dir)
    with pytest.raises(DataError, match="no NTREX-128 text for language 'qqq'"):
        load_ntrex("qqq", data_dir)


def test_mismatched_line_counts_name_both_files_and_the_line(tmp_path):
    src = write(tmp_path / "a.xx", "one\ntwo\nthree\n")
    tgt = write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(DataError, match=r"a\.xx has 3 lines but .*a\.en has 2.*line 3"):
        load_aligned_files(src, tgt, "xx")


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_aligned_files(write(tmp_path / "e.xx", ""), write(tmp_path / "e.en", ""), "xx")


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    path = write(tmp_path / "bad.xx", b"fine\nalso fine\nbroken \xff\xfe here\n")
    with pytest.raises(DataError, match=r"bad\.xx, line 3: not valid UTF-8"):
        read_lines(path)


def test_blank_line_names_file_and_line(tmp_path):
    src = write(tmp_path / "b.xx", "one\n\nthree\n")
    tgt = write(tmp_path / "b.en", "one\ntwo\nthree\n")
    with pytest.raises(DataError, match=r"b\.xx, line 2: blank line"):
        load_aligned_files(src, tgt, "xx")


def test_crlf_files_read_without_carriage_returns(tmp_path):
    assert read_lines(write(tmp_path / "c.txt", b"a\r\nb\r\n")) == ["a", "b"]


def test_tsv_bitext_and_its_errors(tmp_path):
    good = load_tsv(write(tmp_path / "g.tsv", "habari\thello\nasante\tthanks\n"), "swa")
    assert good.source == ["habari", "asante"] and good.target == ["hello", "thanks"]
    with pytest.raises(DataError, match=r"x\.tsv, line 2: expected two non-empty"):
        load_tsv(write(tmp_path / "x.tsv", "habari\thello\nonly one column\n"), "swa")


def test_missing_data_dir_says_where_to_put_files(monkeypatch, tmp_path):
    import optical_core.data.corpora as corpora

    monkeypatch.setattr(corpora, "candidate_data_dirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(DataError, match="OPTICAL_DATA_DIR.*download-data"):
        find_data_dir()


def test_env_var_wins(monkeypatch, tmp_path, data_dir):
    monkeypatch.setenv("OPTICAL_DATA_DIR", str(data_dir))
    import optical_core.data.corpora as corpora

    assert corpora.candidate_data_dirs()[0] == data_dir


def test_download_fails_clearly_offline(tmp_path, monkeypatch):
    import urllib.request

    import optical_core.data.corpora as corpora

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="Could not download .*copy the corpora by hand"):
        corpora.download_corpora(tmp_path / "data", ["swa"])


def test_long_lines_are_truncated_and_counted(teacher, data_dir):
    from optical_core.distil.train import count_truncated

    bitext = Bitext("swa", ["neno " * 300, "habari"], ["word " * 300, "hello"])
    assert count_truncated(teacher.tokenizer, teacher.tokenizer, bitext, 64) == 1
    batch = teacher.tokenize(bitext.source, 64)
    assert batch.input_ids.shape[1] == 64
