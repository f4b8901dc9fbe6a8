"""Journal export files (``sources.journal_export_globs``): ``journalctl -o json`` lines written to files.

They are tailed like every other file (identity, checkpoints, rotation) and shipped with
``origin.source="journald"``, so the server parses them with its journald parser. Real agent process,
kill -9, rename and copytruncate rotation; every record arrives exactly once.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from kubetrail.agent.config import AgentConfig
from tests.agent.conftest import AgentProcess, Receiver, agent_config, tally
from tests.agent.receiver import read_records


def _records(path: Path, unit: str, start: int, count: int) -> None:
    with path.open("a") as fh:
        for i in range(start, start + count):
            fh.write(
                json.dumps(
                    {
                        "__CURSOR": f"s=abc;i={i:x}",
                        "__REALTIME_TIMESTAMP": str(1_767_225_600_000_000 + i),
                        "_SYSTEMD_UNIT": f"{unit}.service",
                        "SYSLOG_IDENTIFIER": unit,
                        "PRIORITY": "6",
                        "_HOSTNAME": "node-a",
                        "KT_SEQ": f"{unit}:{i}",
                        "MESSAGE": f"{unit} did something kt_seq={unit}:{i}",
                    }
                )
                + "\n"
            )


def _wait_for(receiver: Receiver, ids: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(tally(receiver.out).seq) >= ids:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {ids} ids received in {timeout} s")


def test_option_defaults_to_no_globs() -> None:
    assert AgentConfig().sources.journal_export_globs == []


@pytest.mark.integration
def test_journal_exports_are_tailed_with_rotation_and_restarts_and_shipped_as_journald(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    kubelet, containerd = journal / "kubelet.json", journal / "containerd.json"
    _records(kubelet, "kubelet", 0, 300)
    _records(containerd, "containerd", 0, 200)
    receiver = Receiver(tmp_path)
    receiver.start()
    cfg = agent_config(
        tmp_path,
        receiver.url,
        sources={"journal_export_globs": [str(journal / "*.json")], "container_globs": []},
    )
    agent = AgentProcess(tmp_path, cfg)
    try:
        agent.start()
        _wait_for(receiver, 500)
        _records(kubelet, "kubelet", 300, 100)
        _records(containerd, "containerd", 200, 100)
        agent.kill9()
        # rotations while the agent is down: rename for kubelet, copytruncate for containerd
        kubelet.rename(journal / "kubelet.json.1")
        _records(kubelet, "kubelet", 400, 50)
        shutil.copyfile(containerd, journal / "containerd.json.1")
        with containerd.open("r+") as fh:
            fh.truncate(0)
        _records(containerd, "containerd", 300, 50)
        agent.start()
        _wait_for(receiver, 800)
        # and while it runs
        _records(kubelet, "kubelet", 450, 50)
        _wait_for(receiver, 850)
        assert agent.terminate() == 0
    finally:
        if agent.proc is not None:
            agent.kill9()
        receiver.stop()
    result = tally(receiver.out)
    for unit, n in (("kubelet", 500), ("containerd", 350)):
        assert sorted(i for s, i in result.seq if s == unit) == list(range(n)), unit
    assert result.duplicated() == 0
    records = list(read_records(receiver.out))
    assert {r["source"] for r in records} == {"journald"}
    assert {r["path"] for r in records} == {str(kubelet), str(containerd)}  # rotated files: live name
    assert all(r["meta"] == {"host.name": "node-a"} for r in records)

    # the server's dispatch parses them with the journald parser
    from kubetrail.chunk import Chunk, FileIdentity, Origin
    from kubetrail.formats.dispatch import Parsing

    first = records[0]
    dev, inode, fingerprint = first["key"].rpartition("|")[2].split(":")
    origin = Origin(
        node="node-a",
        source="journald",
        path=first["path"],
        file=FileIdentity(int(dev), int(inode), fingerprint),
        offset=first["offset"],
    )
    parsing = Parsing()
    assert parsing.choose(Chunk(origin, first["data"]))[0] == "journald"
    batch = parsing.parse(Chunk(origin, first["data"])).to_pydict()
    assert batch["message"][0].startswith(("kubelet did something", "containerd did something"))
    assert all(e is None for e in batch["event.parse_error"])
