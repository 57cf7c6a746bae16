"""Recordings in and out: WFDB records and their annotations, AAMI beat classes, labelled
beat sets, Kaggle CSV beats, multimodal session files, PhysioNet downloads."""

from vitaledge.device.io.aami import (  # noqa: F401
    map_annotations,
    symbol_class,
)
from vitaledge.device.io.beats import (  # noqa: F401
    BeatSet,
    beats_from_dir,
    beats_from_record,
)
from vitaledge.device.io.fetch import (  # noqa: F401
    FetchError,
    fetch_physionet,
)
from vitaledge.device.io.kaggle_csv import (  # noqa: F401
    KAGGLE_WINDOW,
    CsvFormatError,
    load_kaggle_csv,
)
from vitaledge.device.io.records import (  # noqa: F401
    Record,
    RecordError,
    list_records,
    read_record,
    wfdb_module,
)
from vitaledge.device.io.sessions import (  # noqa: F401
    FaceFrame,
    Session,
    SessionError,
    read_session,
    session_chunks,
    write_session,
)

