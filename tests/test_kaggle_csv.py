import numpy as np
import pytest
from conftest import unavailable

from vitaledge.device.io.kaggle_csv import CsvFormatError, load_kaggle_csv


@pytest.fixture()
def fragments(data_dir):
    d = data_dir / "kaggle-csv-fragments"
    if not d.is_dir():
        unavailable(f"{d} not found")
    return d


def test_reads_the_real_fragments(fragments):
    for name in ("tami64_mitbih_train.csv", "tami64_mitbih_test.csv"):
        b = load_kaggle_csv(fragments / name)
        assert b.X.shape == (10, 187) and b.X.dtype == np.float32
        assert b.y.tolist() == [0] * 10
        assert 0.0 <= b.X.min() and b.X.max() <= 1.0
        assert b.description["window"]["convention"] == "kachuee"


def test_header_and_index_column_are_accepted(fragments, tmp_path):
    ref = load_kaggle_csv(fragments / "tami64_mitbih_train.csv")
    lines = (fragments / "tami64_mitbih_train.csv").read_text().splitlines()
    header = ",".join(["idx"] + [str(i) for i in range(188)])
    p = tmp_path / "with_index.csv"
    p.write_text("\n".join([header] + [f"{i},{row}" for i, row in enumerate(lines)]) + "\n")
    b = load_kaggle_csv(p)
    np.testing.assert_array_equal(b.X, ref.X)
    assert b.y.tolist() == ref.y.tolist()


@pytest.mark.parametrize("index", [False, True])
def test_the_column_numbers_pandas_writes_as_a_header_are_a_header(fragments, tmp_path, index):
    """pd.read_csv(header=None).to_csv(...) heads the file with the column numbers 0..187
    (after an empty cell with the index): an all-number row that was read as a beat with
    label 187 and refused."""
    ref = load_kaggle_csv(fragments / "tami64_mitbih_test.csv")
    lines = (fragments / "tami64_mitbih_test.csv").read_text().splitlines()
    header = ("," if index else "") + ",".join(str(i) for i in range(188))
    rows = [f"{i},{row}" if index else row for i, row in enumerate(lines)]
    p = tmp_path / "pandas.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    b = load_kaggle_csv(p)
    np.testing.assert_array_equal(b.X, ref.X)
    # a first data row that merely looks numeric is still data
    q = tmp_path / "plain.csv"
    q.write_text("\n".join(lines) + "\n")
    assert len(load_kaggle_csv(q).y) == len(ref.y)


def _row(values, label):
    return ",".join(f"{v:.6e}" for v in values) + f",{label}"


@pytest.mark.parametrize("content, message", [
    (_row(np.zeros(100), "0.0"), "101 columns; expected 187"),
    (_row(np.zeros(187), "7.0"), "label '7.0'"),
    (_row(np.zeros(187), "1.5"), "label '1.5'"),
    (_row(np.zeros(187), "0.0") + "\n" + _row(np.zeros(186), "abc,0.0"),
     "bad.csv:2: not a number"),
    (_row(np.full(187, np.nan), "0.0"), "NaN"),
    ("", "no data rows"),
])
def test_malformed_files_are_refused_with_the_reason(tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_text(content + "\n")
    with pytest.raises(CsvFormatError, match=message):
        load_kaggle_csv(p)


def test_ragged_rows_name_the_line(tmp_path):
    p = tmp_path / "ragged.csv"
    p.write_text(_row(np.zeros(187), "0.0") + "\n" + _row(np.zeros(180), "0.0") + "\n")
    with pytest.raises(CsvFormatError, match=r"ragged.csv:2:"):
        load_kaggle_csv(p)


def test_a_bom_is_dropped_and_a_bad_first_row_is_refused_not_skipped(fragments, tmp_path):
    """Excel's UTF-8 BOM before the first row, and a first row with one bad cell: the first
    is read as a beat (it was taken for a header and lost), the second refused naming the
    line and the cell (it was skipped as a header)."""
    src = fragments / "tami64_mitbih_test.csv"
    ref = load_kaggle_csv(src)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    b = load_kaggle_csv(bom)
    assert len(b.y) == len(ref.y) == 10
    np.testing.assert_array_equal(b.X, ref.X)
    lines = src.read_text().splitlines()
    cells = lines[0].split(",")
    cells[4] = "abc"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([",".join(cells), *lines[1:]]) + "\n")
    with pytest.raises(CsvFormatError, match=r"bad.csv:1: .*abc"):
        load_kaggle_csv(bad)


@pytest.mark.parametrize("index", [False, True])
def test_a_header_of_column_numbers_and_a_label_name_is_a_header(fragments, tmp_path, index):
    """pandas after renaming the label column: ``0,...,186,label`` (after ``,`` with the
    index): a header, as before the rule that refuses a bad first row."""
    src = fragments / "tami64_mitbih_test.csv"
    ref = load_kaggle_csv(src)
    head = [str(i) for i in range(187)] + ["label"]
    lines = src.read_text().splitlines()
    rows = [f"{i},{r}" for i, r in enumerate(lines)] if index else lines
    p = tmp_path / "renamed.csv"
    p.write_text("\n".join([",".join(([""] if index else []) + head), *rows]) + "\n")
    b = load_kaggle_csv(p)
    np.testing.assert_array_equal(b.X, ref.X)
