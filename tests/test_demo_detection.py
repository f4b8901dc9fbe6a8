"""Simulated attacks vs the project's rule pack: every attack detected, no alert on background noise.

simulate (small, seeded) -> the formats' ``Parsing`` stage over every file, as the server parses what
the agent ships -> the ``Detector`` with ``rules/`` -> alerts attributed to the ground truth
(``truth.jsonl``) by the events they hold (``kubetrail.demo.score``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.demo.score import event_evidence, score_alerts, seq_check, seq_counts
from kubetrail.detect.alerts import AlertStore
from kubetrail.detect.config import DetectConfig
from kubetrail.detect.detector import Detector
from kubetrail.formats.dispatch import Parsing
from kubetrail.simulate import SimulationOptions, load_manifest, simulate_batch

REPO = Path(__file__).resolve().parents[1]
# what each file of a node is, as the agent and the server's format choice see it
SOURCES = (
    ("var/log/pods/", "container"),
    ("var/log/kubernetes/audit/", "audit"),
    ("var/log/kubelet.log", "klog"),
    ("var/log/syslog", "syslog"),
    ("var/log/containerd.log", "file"),  # logrus text: no parser; stored as flagged raw lines
    ("journal/", "journald"),
)


def tree_chunks(root: Path) -> Iterator[Chunk]:
    """Every readable file of the simulated nodes as chunks of whole lines (gzipped rotations skipped)."""
    inode = 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix == ".gz":
            continue
        node, _, inner = str(path.relative_to(root)).partition("/")
        source = next((s for prefix, s in SOURCES if inner.startswith(prefix)), None)
        if source is None:
            continue
        inode += 1
        data = path.read_bytes()
        offset = 0
        while offset < len(data):  # ~1 MiB pieces cut after a newline, as the agent reads
            end = data.rfind(b"\n", offset, offset + (1 << 20)) + 1 or len(data)
            origin = Origin(
                node=node, source=source, path="/" + inner, file=FileIdentity(1, inode, "f"), offset=offset
            )
            yield Chunk(origin, data[offset:end])
            offset = end


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    root = tmp_path_factory.mktemp("demo-detect") / "cluster"
    simulate_batch(root, SimulationOptions(nodes=3, hours=0.05, seed=7))
    parsing = Parsing()
    now = datetime.now(UTC)
    batches = [parsing.parse(chunk, now) for chunk in tree_chunks(root)]
    batches.append(parsing.flush(now, force=True))
    return root, pa.Table.from_batches([b for b in batches if b.num_rows])


def test_every_simulated_line_is_parsed_once(parsed: tuple[Path, pa.Table]) -> None:
    root, table = parsed
    con = duckdb.connect()
    con.register("logs", table)
    manifest = load_manifest(root)
    check = seq_check(seq_counts(lambda sql: con.sql(sql).to_arrow_table()), manifest)
    assert check.missing_count == 0, {s: v[:5] for s, v in check.missing.items()}
    assert check.duplicated_count == 0, {s: v[:5] for s, v in check.duplicated.items()}
    assert not check.unexpected


def test_rule_pack_detects_every_attack_and_nothing_else(parsed: tuple[Path, pa.Table]) -> None:
    root, table = parsed
    truth = [json.loads(line) for line in (root / "truth.jsonl").read_text().splitlines()]
    assert len(truth) == 14
    detector = Detector(DetectConfig(rules=[str(REPO / "rules")]), store=AlertStore(":memory:"))
    detector.sinks = []  # keep the test's output quiet; alerts are read back below
    assert not detector.ruleset.errors
    alerts = []
    for batch in table.to_batches(max_chunksize=20_000):  # several batches: correlations carry state
        alerts += detector.process(batch)[1]
    detector.close()
    stored = {a.id: a for a in alerts}  # merged alerts come back once per batch they grew in
    con = duckdb.connect()
    con.register("logs", table)
    evidence = event_evidence(
        lambda sql: con.sql(sql).to_arrow_table(), (e for a in stored.values() for e in a.event_ids), truth
    )
    score = score_alerts(list(stored.values()), evidence, truth)
    assert score.unknown_events == 0
    missed = [(a.id, a.name) for a in score.missed]
    assert not missed, f"attacks not detected: {missed}"
    assert not score.noise_alerts, f"alerts on background noise: {score.noise_alerts}"
    by_name = {a.name: a for a in score.attacks}
    assert "Kubernetes Exec Into Pod" in by_name["pod-exec"].rules
    assert "Container Log Shows A Reverse Shell" in by_name["reverse-shell"].rules


def test_scoring_flags_an_alert_on_noise(parsed: tuple[Path, pa.Table]) -> None:
    """The attribution itself can fail: an alert holding a noise event is reported as such."""
    from kubetrail.detect.alerts import Alert

    root, table = parsed
    truth = [json.loads(line) for line in (root / "truth.jsonl").read_text().splitlines()]
    audit = table.filter(pa.compute.equal(table["event.dataset"], "audit"))
    con = duckdb.connect()
    con.register("logs", table)
    attack_audit_ids = {x for a in truth for x in a["audit_ids"]}
    pairs = zip(audit["event.id"].to_pylist(), audit["kubernetes.audit.auditID"].to_pylist(), strict=True)
    noise_id = next(eid for eid, aid in pairs if aid not in attack_audit_ids)
    fake = Alert("r", "Fake", "low", 2, {}, [noise_id], "", "", id="x")
    evidence = event_evidence(lambda sql: con.sql(sql).to_arrow_table(), [noise_id], truth)
    score = score_alerts([fake], evidence, truth)
    assert score.detected == 0 and [n["alert"] for n in score.noise_alerts] == ["x"]
