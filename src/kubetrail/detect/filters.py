"""Sigma filters (Sigma v2 meta-rules): tune public rules without editing them.

A filter document (``filter: {rules: [...], <selection>: {...}, condition: not <selection>}`` plus a
``logsource``) names rules by id or name (or ``any``: every rule of its log source). pySigma
(:class:`sigma.filters.SigmaFilter`) rewrites a rule's condition to ``(rule) and (filter)`` before
conversion, so the compiled SQL carries the exclusion and streaming detection and retro-hunts, which
both run that SQL, stay identical.

pySigma silently ignores a reference that matches nothing; a tuning that quietly stops applying (a
typo, an upstream rule that changed its id) would bring the noise back unnoticed. So the plan made here
records a :class:`FilterIssue` for every reference that names no loaded rule, names a rule of another
log source or a correlation, and the loader records one for a filter that does not compile against its
rule — that rule then runs without that filter, the others are unaffected.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sigma.correlations import SigmaCorrelationRule
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule

__all__ = ["FilterIssue", "FilterPlan", "LoadedFilter", "apply_filters", "plan_filters"]


@dataclass(frozen=True)
class FilterIssue:
    """A filter (or one of its references) that does not apply, and why. Never disables a rule."""

    filter_id: str
    title: str
    path: str
    kind: str  # "unknown_rule", "logsource", "correlation" or "compile"
    reference: str
    error: str


@dataclass
class LoadedFilter:
    """A parsed filter document and the file it came from."""

    sigma: SigmaFilter
    path: str

    @property
    def id(self) -> str:
        return str(self.sigma.id) if self.sigma.id else (self.sigma.name or self.path)

    @property
    def title(self) -> str:
        return self.sigma.title or self.id


@dataclass
class FilterPlan:
    """Which filters apply to which rule (by ``id()`` of the rule object), and the problems found."""

    by_rule: dict[int, list[LoadedFilter]] = field(default_factory=dict)
    issues: list[FilterIssue] = field(default_factory=list)


def _names_rule(reference: str, rule: SigmaRule | SigmaCorrelationRule) -> bool:
    """pySigma's reference semantics: a UUID matches the rule id, anything else the rule's ``name``."""
    try:
        return rule.id is not None and UUID(reference) == rule.id
    except ValueError:
        return rule.name is not None and reference == rule.name


def plan_filters(
    filters: Sequence[LoadedFilter], rules: Sequence[SigmaRule | SigmaCorrelationRule]
) -> FilterPlan:
    """Resolve every filter's references against ``rules`` (all loaded rules, disabled ones included)."""
    plan = FilterPlan()
    for flt in filters:
        refs = flt.sigma.filter.rules
        if isinstance(refs, str):  # "any": every detection rule whose log source the filter contains
            for rule in rules:
                if isinstance(rule, SigmaRule) and rule.logsource in flt.sigma.logsource:
                    plan.by_rule.setdefault(id(rule), []).append(flt)
            continue
        for ref in refs:
            named = [r for r in rules if _names_rule(ref.reference, r)]
            if not named:
                plan.issues.append(
                    FilterIssue(
                        flt.id,
                        flt.title,
                        flt.path,
                        "unknown_rule",
                        ref.reference,
                        f"filter {flt.title!r} ({flt.path}) names rule {ref.reference!r}, "
                        "which is not loaded",
                    )
                )
            for rule in named:
                if isinstance(rule, SigmaCorrelationRule):
                    msg = f"rule {ref.reference!r} is a correlation; filters apply to detection rules"
                    plan.issues.append(
                        FilterIssue(flt.id, flt.title, flt.path, "correlation", ref.reference, msg)
                    )
                elif rule.logsource not in flt.sigma.logsource:
                    ls = flt.sigma.logsource
                    msg = (
                        f"rule {ref.reference!r} reads {rule.logsource.to_dict()}, outside the filter's "
                        f"log source {ls.to_dict()}: not applied"
                    )
                    plan.issues.append(
                        FilterIssue(flt.id, flt.title, flt.path, "logsource", ref.reference, msg)
                    )
                elif flt not in plan.by_rule.get(id(rule), []):
                    plan.by_rule.setdefault(id(rule), []).append(flt)
    return plan


def apply_filters(rule: SigmaRule, filters: Sequence[LoadedFilter]) -> SigmaRule:
    """A copy of ``rule`` with every filter's condition ANDed in (the original stays untouched)."""
    filtered = copy.deepcopy(rule)
    for flt in filters:
        out = flt.sigma.apply_on_rule(filtered)
        assert isinstance(out, SigmaRule)
        filtered = out
    return filtered
