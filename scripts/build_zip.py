"""Write a reproducible zip archive of files and directories (``make build`` runs it).

    python scripts/build_zip.py OUT.zip SOURCE[=NAME] ...

Each SOURCE is stored under NAME (default: its own base name); ``SOURCE/=`` stores a
directory's contents at the root of the archive. Entries are sorted, dated 1980-01-01 and given
fixed permissions, and caches (``__pycache__``, ``*.pyc``) are left out, so the same inputs give
the same bytes: CDK's asset hash, and so ``cdk diff``, change only when the contents do.

One zip per asset is also what makes synth fast: CDK fingerprints and stages one file instead
of walking and copying thousands (benchmarks/synth_speed.py measures it).
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc"}


def entries(source: Path, name: str) -> Iterator[tuple[Path, str]]:
    """(file, name in the archive) for ``source``, a file or a directory, caches left out."""
    if source.is_file():
        yield source, name
        return
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist")
    for directory, subdirs, files in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
        relative = Path(directory).relative_to(source)
        for file in sorted(files):
            if Path(file).suffix in SKIPPED_SUFFIXES:
                continue
            yield Path(directory, file), (Path(name) / relative / file).as_posix().lstrip("/")


def parse(argument: str) -> tuple[Path, str]:
    source, _, name = argument.partition("=")
    path = Path(source)
    return path, (name if "=" in argument else path.name)


def build_zip(output: Path, sources: list[tuple[Path, str]]) -> int:
    """Write ``output`` from ``sources``; the number of files stored."""
    members = sorted(
        (arcname, path) for source, name in sources for path, arcname in entries(source, name)
    )
    counts = Counter(arcname for arcname, _ in members)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"two sources write the same archive names: {duplicates[:5]}")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arcname, path in members:
            info = zipfile.ZipInfo(arcname, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.create_system = 3  # Unix, so that the permissions above are honoured
            zf.writestr(info, path.read_bytes())
    partial.replace(output)  # never a half-written archive under the real name
    return len(members)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    output = Path(argv[1])
    count = build_zip(output, [parse(argument) for argument in argv[2:]])
    print(f"{output}: {count} files, {output.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
