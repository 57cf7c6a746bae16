"""Downloading PhysioNet databases with wfdb (the only network use, and only on request)."""

from __future__ import annotations

from pathlib import Path

#: The PhysioNet databases ``vitaledge data fetch`` offers, with what each holds.
DATABASES = {
    "mitdb": "MIT-BIH Arrhythmia Database: 48 half-hour two-lead ECG records, beat annotations",
    "nstdb": "MIT-BIH Noise Stress Test Database: the noise records bw (baseline wander), em "
             "(electrode motion) and ma (muscle artifact), and 12 noisy copies of 118 and 119",
}


class FetchError(RuntimeError):
    """The download failed; the message says why (offline, unknown record, ...)."""


def fetch_physionet(database: str, out: Path, records: list[str] | None = None) -> int:
    """Download ``database``'s records (all by default) and their annotations, where a
    record has any, into ``out``; e.g. ``nstdb`` with ``["bw", "em", "ma"]`` for the noise
    records ``vitaledge data nst`` adds to clean ones."""
    if database not in DATABASES:
        raise FetchError(f"unknown database {database!r}: expected one of {sorted(DATABASES)}")
    try:
        import wfdb
    except ImportError as exc:
        raise FetchError("downloading needs the 'wfdb' package") from exc
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create output directory {out}: {exc.strerror or exc}") from exc
    try:
        names = records or wfdb.get_record_list(database)
        wfdb.dl_database(database, dl_dir=str(out), records=names, annotators="all")
    except Exception as exc:  # requests/urllib errors differ by wfdb version
        if made and not any(out.iterdir()):  # made for this fetch, and nothing came
            out.rmdir()
        raise FetchError(f"could not download {database} from PhysioNet ({type(exc).__name__}: "
                         f"{exc}); check the network connection, or copy the records into "
                         f"{out} by hand") from exc
    return len(names)
