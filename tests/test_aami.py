import numpy as np

from vitaledge.device.io.aami import CLASSES, map_annotations, symbol_class


def test_every_mitbih_beat_symbol_maps_to_its_aami_class():
    expected = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
    for cls, symbols in expected.items():
        for s in symbols:
            assert CLASSES[symbol_class(s)] == cls, s


def test_non_beat_annotations_are_dropped():
    for s in ["+", "~", "|", '"', "x", "!", "[", "]", "(", ")", "p", "t", "u", "`", "'", "^"]:
        assert symbol_class(s) is None, s
    samples = np.array([10, 20, 30, 40, 50])
    symbols = ["+", "N", "~", "V", "/"]
    s, c = map_annotations(samples, symbols)
    assert s.tolist() == [20, 40, 50]
    assert [CLASSES[i] for i in c] == ["N", "V", "Q"]


def test_real_record_class_counts_match_the_data_readme(mitdb_dir):
    from vitaledge.device.io.records import read_record

    rec = read_record(mitdb_dir / "208")
    _, c = map_annotations(rec.ann_samples, rec.ann_symbols)
    counts = dict(zip(CLASSES, np.bincount(c, minlength=5).tolist(), strict=True))
    assert counts == {"N": 1586, "S": 2, "V": 992, "F": 373, "Q": 2}
