"""The demo's verdicts: lost / duplicated events by sequence id, and detections vs ``truth.jsonl``.

They run after the server stopped gracefully (``kubetrail.demo.steps``): the store is opened directly
(one row per sequence id needs more rows than a hunter's query cap), the alerts come from the server's
alert database, and ``kubetrail.demo.score`` attributes each alert to attacks or to background noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from kubetrail.demo import DemoContext
    from kubetrail.demo.steps import ServerRun

__all__ = ["rule_origins", "step_detections", "step_lost_duplicated"]


def _open_store(server: ServerRun) -> Any:
    """The server's store, read after it stopped; one id per row needs more rows than a hunter's cap."""
    from kubetrail.store.config import QueryLimits, StoreConfig
    from kubetrail.store.core import Store

    limits = QueryLimits(max_rows=100_000_000, timeout_secs=600)
    return Store(server.data_dir / "store", StoreConfig(limits=limits))


def step_lost_duplicated(ctx: DemoContext) -> None:
    """Every sequence id the agents read, counted in the store: lost = 0, duplicated = 0."""
    from kubetrail.demo.score import seq_check, seq_counts
    from kubetrail.demo.steps import DemoStepError
    from kubetrail.simulate import load_manifest

    server: ServerRun | None = ctx.results.get("server")
    if server is None:
        raise DemoStepError("the server did not run")
    manifest = load_manifest(ctx.cluster_root)
    shipped = list(manifest["streams"])  # journald exports too (the agent's journal_export_globs)
    store = _open_store(server)
    try:
        seen = seq_counts(lambda sql: store.sql(sql))
    finally:
        store.close()
    check = seq_check(seen, manifest, shipped)
    expected = sum(int(manifest["streams"][s]["lines"]) for s in shipped)
    stored = sum(sum(c.values()) for s, c in seen.items() if s in set(shipped))
    table = Table("layer", "streams", "lines written", "ids stored", "lost", "duplicated")

    def layer_of(stream: str) -> str:  # journald exports are the simulator's "node" layer: shown apart
        info = manifest["streams"][stream]
        return "journald" if info.get("format") == "journald" else str(info["layer"])

    for layer in ("container", "controlplane", "node", "journald", "audit"):
        streams = [s for s in shipped if layer_of(s) == layer]
        table.add_row(
            layer,
            str(len(streams)),
            f"{sum(int(manifest['streams'][s]['lines']) for s in streams):,}",
            f"{sum(sum(seen.get(s, {}).values()) for s in streams):,}",
            f"{sum(len(check.missing.get(s, [])) for s in streams):,}",
            f"{sum(len(check.duplicated.get(s, [])) for s in streams):,}",
        )
    ctx.console.print(table)
    ctx.results["seq"] = {"expected": expected, "stored": stored, "lost": check.missing_count,
                          "duplicated": check.duplicated_count}  # fmt: skip
    ctx.console.print(
        f"[bold]sequence ids: written={expected:,} stored={stored:,} lost={check.missing_count} "
        f"duplicated={check.duplicated_count}[/bold]"
    )
    for kind, found in (("lost", check.missing), ("duplicated", check.duplicated)):
        for stream, ids in list(found.items())[:5]:
            ctx.console.print(f"  [red]{kind}[/red] {stream}: {len(ids)} ids, first {ids[:5]}")


def step_detections(ctx: DemoContext) -> None:
    """For each attack of truth.jsonl: detected or not, by which rules and alerts; then alerts on noise."""
    from kubetrail.demo.score import event_evidence, score_alerts
    from kubetrail.demo.steps import DemoStepError
    from kubetrail.detect.alerts import AlertStore

    server: ServerRun | None = ctx.results.get("server")
    if server is None or not server.rule_dirs:
        raise DemoStepError("no detection ran (no server or no rules)")
    if not server.alerts_db.exists():
        raise DemoStepError(f"no alert database at {server.alerts_db}")
    truth = [json.loads(line) for line in (ctx.cluster_root / "truth.jsonl").read_text().splitlines()]
    alerts_store = AlertStore(server.alerts_db)
    try:
        alerts = alerts_store.list(limit=1_000_000)
    finally:
        alerts_store.close()
    store = _open_store(server)
    try:
        evidence = event_evidence(lambda sql: store.sql(sql), (e for a in alerts for e in a.event_ids), truth)
    finally:
        store.close()
    score = score_alerts(alerts, evidence, truth)
    origin = rule_origins(server.rule_dirs)
    by_id = {a.id: a for a in alerts}
    for attack, result in zip(truth, score.attacks, strict=True):
        if result.detected:
            mark = f"[green]detected[/green] by {len(result.rules)} rules, {len(result.alerts)} alerts"
        else:
            mark = "[red]NOT DETECTED[/red]"
        ctx.console.print(f"[bold]{result.id} {result.name}[/bold] ({attack.get('technique', '')}): {mark}")
        for title in result.rules:
            ids = [i for i in result.alerts if by_id[i].rule_title == title]
            ctx.console.print(f"    - {title} [dim](alert {', '.join(ids)})[/dim]")
    noise_by_origin: dict[str, int] = {"pack": 0}
    for n in score.noise_alerts:
        n["origin"], n["falsepositives"] = origin.get(n["rule_id"], ("?", []))
        noise_by_origin[n["origin"]] = noise_by_origin.get(n["origin"], 0) + 1
    if score.noise_alerts:
        ctx.console.print(
            "[bold]alerts on background noise[/bold] (events no attack in truth.jsonl explains):"
        )
        for n in score.noise_alerts:
            ctx.console.print(
                f"    - {escape(n['origin'])}: {n['rule']} ({n['level']}): {n['noise_events']} noise events, "
                f"group {escape(json.dumps(n['group_key']))}"
            )
            if [x for x in n["falsepositives"] if x.lower() != "unknown"]:
                ctx.console.print(
                    f"      the rule's own false-positive note: {'; '.join(n['falsepositives'])}"
                )
    ctx.results["detections"] = score
    ctx.results["noise_by_origin"] = noise_by_origin
    ctx.console.print(
        f"[bold]attacks detected: {score.detected}/{len(score.attacks)}; alerts: {score.alerts_total}; "
        f"alerts on background noise: {len(score.noise_alerts)}[/bold]"
    )
    ctx.console.print(
        "noise alerts by rule source: " + " ".join(f"{k}={v}" for k, v in noise_by_origin.items())
    )
    if score.missed:
        ctx.console.print("missed: " + ", ".join(f"{a.id} {a.name}" for a in score.missed))
    ctx.console.print(f"[dim]triage them: kubetrail alerts list --db {server.alerts_db}[/dim]")


def rule_origins(rule_dirs: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Rule id -> (``pack`` for the project's ``rules/`` else the directory name, its ``falsepositives``)."""
    from kubetrail.demo.steps import REPO
    from kubetrail.detect.rules import rule_files

    out: dict[str, tuple[str, list[str]]] = {}
    for rule_dir in rule_dirs:
        label = "pack" if Path(rule_dir).resolve() == (REPO / "rules").resolve() else Path(rule_dir).name
        for path in rule_files([rule_dir]):
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except (OSError, yaml.YAMLError):
                continue
            for doc in docs:
                if isinstance(doc, dict) and doc.get("id"):
                    notes = doc.get("falsepositives") or []
                    out[str(doc["id"])] = (label, [str(x) for x in notes] if isinstance(notes, list) else [])
    return out
