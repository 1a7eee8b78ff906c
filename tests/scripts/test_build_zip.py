"""The reproducible zips of `make build`: same inputs, same bytes, so the asset hash is stable."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from scripts.build_zip import build_zip, parse


def tree(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "pkg" / "stale.pyc").write_bytes(b"\0")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_same_inputs_give_the_same_bytes_whatever_the_dates(tmp_path: Path) -> None:
    source = tree(tmp_path / "src")
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    build_zip(first, [parse(f"{source}/=")])
    os.utime(source / "pkg" / "__init__.py", (1_000_000_000, 1_000_000_000))
    build_zip(second, [parse(f"{source}/=")])
    assert first.read_bytes() == second.read_bytes()


def test_caches_are_left_out_names_and_modes_kept(tmp_path: Path) -> None:
    source = tree(tmp_path / "src")
    output = tmp_path / "out.zip"
    assert (
        build_zip(output, [parse(str(source / "pkg")), parse(f"{source / 'run.sh'}=bin/run")]) == 2
    )
    with zipfile.ZipFile(output) as zf:
        assert zf.namelist() == ["bin/run", "pkg/__init__.py"]
        assert zf.getinfo("bin/run").external_attr >> 16 == 0o100755
        assert zf.getinfo("pkg/__init__.py").external_attr >> 16 == 0o100644


def test_two_sources_for_one_name_are_refused(tmp_path: Path) -> None:
    source = tree(tmp_path / "src")
    with pytest.raises(ValueError, match="same archive names"):
        build_zip(tmp_path / "out.zip", [parse(str(source / "pkg")), parse(str(source / "pkg"))])
    assert not (tmp_path / "out.zip").exists()
