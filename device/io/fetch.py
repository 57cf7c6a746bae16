"""Downloading PhysioNet databases with wfdb (the only network use, and only on request)."""

from __future__ import annotations

from pathlib import Path

#: The PhysioNet databases ``vitaledge data fetch`` offers, with what each holds.
DATABASES = {
    "mitdb": "MIT-BIH Arrhythmia Database: 48 half-hour two-lead ECG records, beat annotations",
    "nstdb": "MIT-BIH Noise Stress Test Database: the noise records bw (baseline wander), em "
             "(electrode motion) and ma (muscle artifact), and 12 noisy copies of 118 and 119",
}


#: Each database's record names (PhysioNet's RECORDS files): a name outside them is refused
#: before any download, not reported as a network failure.
RECORDS = {
    "mitdb": tuple(str(n) for n in (*range(100, 110), *range(111, 120), *range(121, 125),
                                    200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213,
                                    214, 215, 217, 219, 220, 221, 222, 223, 228, 230, 231,
                                    232, 233, 234)),
    "nstdb": ("bw", "em", "ma", *(f"{r}e{snr}" for r in (118, 119)
                                  for snr in ("24", "18", "12", "06", "00", "_6"))),
}


class FetchError(RuntimeError):
    """The download failed; the message says why (offline, unknown record, ...)."""


def fetch_physionet(database: str, out: Path, records: list[str] | None = None) -> int:
    """Download ``database``'s records (all by default) and their annotations, where a
    record has any, into ``out``; e.g. ``nstdb`` with ``["bw", "em", "ma"]`` for the noise
    records ``vitaledge data nst`` adds to clean ones."""
    if database not in DATABASES:
        raise FetchError(f"unknown database {database!r}: expected one of {sorted(DATABASES)}")
    unknown = [r for r in records or [] if r not in RECORDS[database]]
    if unknown:
        raise FetchError(f"{database} has no record {', '.join(unknown)}; its records: "
                         f"{', '.join(RECORDS[database])}")
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
        names = records or list(RECORDS[database])
        wfdb.dl_database(database, dl_dir=str(out), records=names, annotators="all")
    except Exception as exc:  # requests/urllib errors differ by wfdb version
        if made and not any(out.iterdir()):  # made for this fetch, and nothing came
            out.rmdir()
        raise FetchError(f"could not download {database} from PhysioNet ({type(exc).__name__}: "
                         f"{exc}); check the network connection, or copy the records into "
                         f"{out} by hand") from exc
    return len(names)
