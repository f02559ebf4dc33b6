"""What the seed stage reports about its specialists: each one's lead in its own domain."""

from __future__ import annotations


def specialist_leads(reports, domains: list[str]) -> dict[str, dict[str, float]]:
    """How far each specialist is ahead of the other specialists and the base in its own domain (points)."""
    leads = {}
    for domain in domains:
        own = reports[f"specialist_{domain}"].by_domain.get(domain, 0.0)
        others = [reports[f"specialist_{d}"].by_domain.get(domain, 0.0) for d in domains if d != domain]
        leads[domain] = {
            "accuracy": round(own, 2),
            "lead_over_other_specialists": round(own - max(others), 2) if others else None,
            "lead_over_base": round(own - reports["base"].by_domain.get(domain, 0.0), 2),
        }
    return leads
