"""Label files that are damaged or absent: one line naming the file and the fix, at once.

Nothing is left in data_dir by a failed build (no empty dataset folder, no download temp dirs).
"""

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest
import tensorflow_datasets as tfds
from richhf_fixtures import build_richhf18k

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OFFICIAL = {  # RichHF-18K's files (google-research-datasets/richhf-18k): bytes and sha256
  "train.tfrecord": (150710286, "3ab17365e49aeaa8d8c32e5317161be28092c83111a8d8eb0d2658895fab2d33"),
  "dev.tfrecord": (9163974, "6db154c91b5673bf58de822eef4618a4ee6f3f7cd56a7749fefdd44f57b4755a"),
  "test.tfrecord": (10112337, "6819ef72631de3af32904f2af3c990b8be0c9597ef3917b9cf0a799161156049"),
}


def _record_starts(data: bytes) -> list[int]:
  """Byte offsets of the records of a TFRecord file (u64 length, u32 crc, data, u32 crc)."""
  starts, pos = [], 0
  while pos + 12 <= len(data):
    starts.append(pos)
    (length,) = struct.unpack("<Q", data[pos : pos + 8])
    pos += 12 + length + 4
  return starts


def _leftovers(data_dir) -> list[str]:
  if not os.path.exists(data_dir):
    return []
  return sorted(os.path.relpath(os.path.join(r, n), data_dir) for r, ds, fs in os.walk(data_dir)
                for n in ds + fs)  # fmt: skip


def _damage(manual, name, how):
  """Damages manual/name; returns the (index, start byte) of the first unreadable record."""
  path = manual / name
  data = path.read_bytes()
  starts = _record_starts(data)
  index = len(starts) // 2
  if how == "flip":  # one byte inside the middle record's data: its CRC check fails
    pos = starts[index] + 12 + 5
    path.write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :])
  else:  # cut inside the middle record
    path.write_bytes(data[: starts[index] + 20])
  return index, starts[index]


@pytest.fixture
def manual(tmp_path, synthetic_source):
  out = tmp_path / "manual"
  shutil.copytree(synthetic_source[0], out)
  return out


@pytest.mark.parametrize("how,name", [("flip", "dev.tfrecord"), ("truncate", "train.tfrecord")])
def test_damaged_label_file_is_one_line_with_offset_and_checksum(manual, tmp_path, how, name):
  index, start = _damage(manual, name, how)
  data_dir = tmp_path / "data"
  with pytest.raises(ValueError) as info:
    build_richhf18k(manual, data_dir)
  message = str(info.value)
  assert "\n" not in message
  assert str(manual / name) in message
  assert f"record #{index} at byte {start}" in message
  size, sha = OFFICIAL[name]
  assert f"does not match the official {name} ({size} bytes, sha256 {sha})" in message
  assert f"{os.path.getsize(manual / name)} bytes" in message
  assert _leftovers(data_dir) == []


@pytest.mark.slow
def test_tfds_build_cli_reports_a_damaged_file_without_traceback(manual, tmp_path):
  _damage(manual, "test.tfrecord", "flip")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  cmd = [
    os.path.join(os.path.dirname(sys.executable), "tfds"),
    "build",
    os.path.join(REPO, "rahf_jax", "data", "richhf18k"),
    f"--manual_dir={manual}",
    f"--data_dir={tmp_path / 'data'}",
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  lines = [line for line in proc.stderr.splitlines() if str(manual / "test.tfrecord") in line]
  assert len(lines) == 1 and "sha256" in lines[0], proc.stderr[-3000:]
  assert _leftovers(tmp_path / "data") == []


def test_absent_labels_without_network_fail_at_once(tmp_path, synthetic_source, monkeypatch):
  """No DNS (as on an offline machine): no download retries, one line naming files and dir."""
  manual = tmp_path / "manual"
  shutil.copytree(synthetic_source[0] / "pickapic", manual / "pickapic")
  shutil.copy(synthetic_source[0] / "train.tfrecord", manual)

  def no_dns(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

  for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setattr(socket, "getaddrinfo", no_dns)
  data_dir = tmp_path / "data"
  start = time.monotonic()
  with pytest.raises(FileNotFoundError) as info:
    build_richhf18k(manual, data_dir)
  elapsed = time.monotonic() - start
  message = str(info.value)
  assert elapsed < 30, f"took {elapsed:.0f}s"
  assert "\n" not in message
  assert re.search(r"dev\.tfrecord, test\.tfrecord .*not in .*manual", message), message
  assert "train.tfrecord" not in message.split(" not in ")[0]
  assert f"put them in {manual}" in message
  assert _leftovers(data_dir) == []


def test_absent_labels_are_downloaded_when_the_host_answers(
  tmp_path, synthetic_source, monkeypatch
):
  """With the host reachable the builder asks TFDS for the official URLs (download faked)."""
  from rahf_jax.data.richhf18k import richhf18k_dataset_builder as builder_module

  manual = tmp_path / "manual"
  shutil.copytree(synthetic_source[0] / "pickapic", manual / "pickapic")
  shutil.copy(synthetic_source[0] / "train.tfrecord", manual)
  asked = []

  def fake_download(self, url_or_urls):
    asked.append(url_or_urls)
    raise ConnectionError("refused")

  monkeypatch.setattr(builder_module, "_unreachable", lambda host: None)
  monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
  with pytest.raises(FileNotFoundError, match=r"could not download dev\.tfrecord, test\.tfrecord"):
    build_richhf18k(manual, tmp_path / "data")
  base = "https://media.githubusercontent.com/media/google-research-datasets/richhf-18k/main/"
  assert asked == [{"dev": base + "dev.tfrecord", "test": base + "test.tfrecord"}]
  assert _leftovers(tmp_path / "data") == []
