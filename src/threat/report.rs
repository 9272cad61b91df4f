//! The security report (the seed's `get_security_report`), answered by the filter itself at a
//! configured path, for configured clients at critical level only. Built from the event ring
//! (the last N events of every worker) and the block table; nothing else is kept for it.

use super::events::iso8601;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Where the report is served, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportAccess {
    pub path: String,
    /// Indices of the clients that may read it.
    pub clients: Vec<usize>,
}

/// What the report is made of.
pub struct ReportInputs<'a> {
    pub now_ms: u64,
    pub active_clients: usize,
    pub blocked_addresses: usize,
    /// Events from the ring, JSON, oldest first.
    pub events: &'a [String],
    pub ring_size: usize,
    /// Abuse scoring: each active client's current threat (empty without scoring).
    pub client_threats: &'a [ClientThreat],
    /// Authentications in the last hour, all workers: (successes, failures).
    pub authentications: (u64, u64),
}

/// One client's current standing, from its behaviour profile and mitigation.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientThreat {
    pub client_id: String,
    pub threat_level: f64,
    pub patterns: Vec<String>,
    pub mitigation: Option<&'static str>,
    pub last_used_s: u64,
    pub requests_last_hour: u64,
}

/// The clients shown: the 100 most threatening.
const CLIENTS_SHOWN: usize = 100;

const HOUR_MS: u64 = 3_600_000;

/// The report as JSON.
pub fn build(inputs: &ReportInputs) -> Value {
    let recent: Vec<Value> = inputs
        .events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|e| {
            e["timestamp"]
                .as_str()
                .is_some_and(|t| t >= iso8601(inputs.now_ms.saturating_sub(HOUR_MS)).as_str())
        })
        .collect();
    let of_type = |kind: &str| recent.iter().filter(|e| e["event_type"] == kind).count();
    let mut breakdown: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut sources: BTreeMap<String, u64> = BTreeMap::new();
    for e in &recent {
        let (kind, level) = (
            e["event_type"].as_str().unwrap_or("unknown").to_string(),
            e["threat_level"].as_str().unwrap_or("unknown").to_string(),
        );
        *breakdown
            .entry(kind)
            .or_default()
            .entry(level.clone())
            .or_default() += 1;
        if matches!(level.as_str(), "high" | "critical") {
            if let Some(ip) = e["ip_address"].as_str().filter(|ip| !ip.is_empty()) {
                *sources.entry(ip.to_string()).or_default() += 1;
            }
        }
    }
    let mut top: Vec<(String, u64)> = sources.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    let failed = of_type("authentication_failed");
    let violations = of_type("rate_limit_exceeded");
    json!({
        "timestamp": iso8601(inputs.now_ms),
        "summary": {
            "total_active_clients": inputs.active_clients,
            "total_failed_auth_attempts": failed,
            "blocked_ips": inputs.blocked_addresses,
            "recent_security_events": recent.len(),
            "authentications_last_hour": inputs.authentications.0 + inputs.authentications.1,
            "authentication_success_rate": success_rate(inputs.authentications),
        },
        "event_breakdown": breakdown,
        "top_threat_sources": top
            .iter()
            .map(|(ip, n)| json!({"ip_address": ip, "threat_count": n}))
            .collect::<Vec<_>>(),
        "security_recommendations": recommendations(inputs, &recent, failed, violations),
        "system_health": {
            "rate_limit_violations": violations,
            "events_considered": inputs.events.len(),
            "event_ring_size": inputs.ring_size,
        },
        "recent_events": recent.iter().rev().take(20).cloned().collect::<Vec<_>>(),
        "client_threat_levels": client_threats(inputs.client_threats),
    })
}

/// Successes over all authentications, to three decimals; `null` when there were none.
fn success_rate((successes, failures): (u64, u64)) -> Option<f64> {
    let total = successes + failures;
    (total > 0).then(|| (successes as f64 * 1000.0 / total as f64).round() / 1000.0)
}

fn client_threats(clients: &[ClientThreat]) -> Vec<Value> {
    let mut sorted: Vec<&ClientThreat> = clients.iter().collect();
    sorted.sort_by(|a, b| {
        b.threat_level
            .total_cmp(&a.threat_level)
            .then_with(|| a.client_id.cmp(&b.client_id))
    });
    sorted
        .into_iter()
        .take(CLIENTS_SHOWN)
        .map(|c| {
            json!({
                "client_id": c.client_id,
                "threat_level": c.threat_level,
                "detected_patterns": c.patterns,
                "mitigation": c.mitigation,
                "last_used": (c.last_used_s > 0).then(|| iso8601(c.last_used_s * 1000)),
                "requests_last_hour": c.requests_last_hour,
            })
        })
        .collect()
}

fn recommendations(
    inputs: &ReportInputs,
    recent: &[Value],
    failed: usize,
    violations: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    if inputs.blocked_addresses > 0 {
        out.push(format!(
            "{} address(es) are blocked for repeated failed authentication: review top_threat_sources and consider allowlists (allowed_ips) for the clients they target",
            inputs.blocked_addresses
        ));
    }
    if failed >= 10 {
        out.push(format!(
            "{failed} failed authentications in the last hour: check for leaked or guessed keys, and rotate keys that appear in the events"
        ));
    }
    if violations >= 10 {
        out.push(format!(
            "{violations} rate-limit violations in the last hour: check the clients concerned for runaway retries or abuse"
        ));
    }
    if inputs.events.len() >= inputs.ring_size && recent.len() == inputs.events.len() {
        out.push(
            "every event held is from the last hour: raise security_monitoring.event_ring_size for a complete hour".to_string(),
        );
    }
    let mitigated = inputs
        .client_threats
        .iter()
        .filter(|c| c.mitigation.is_some())
        .count();
    if mitigated > 0 {
        out.push(format!(
            "{mitigated} client(s) are under an abuse mitigation: review client_threat_levels and their abuse_mitigation events; rotate the credentials of clients that look compromised"
        ));
    }
    if out.is_empty() {
        out.push("no action needed".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_910_871_000;

    fn as_object(value: &Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn event(kind: &str, level: &str, ip: &str, ms: u64) -> String {
        json!({"event_id": "x", "event_type": kind, "threat_level": level, "ip_address": ip,
               "client_id": "unknown", "endpoint": "GET /x", "timestamp": iso8601(ms),
               "details": {}})
        .to_string()
    }

    #[test]
    fn the_report_summarises_the_last_hour() {
        let mut events = vec![event(
            "authentication_failed",
            "low",
            "203.0.113.1",
            NOW - 2 * HOUR_MS,
        )];
        for n in 0..12 {
            events.push(event(
                "authentication_failed",
                "low",
                "203.0.113.1",
                NOW - 1000 * n,
            ));
        }
        events.push(event(
            "ip_temporarily_blocked",
            "high",
            "203.0.113.1",
            NOW - 10,
        ));
        events.push(event("blocked_ip_attempt", "high", "203.0.113.1", NOW - 5));
        events.push(event("blocked_ip_attempt", "high", "198.51.100.2", NOW - 5));
        events.push(event("rate_limit_exceeded", "medium", "192.0.2.3", NOW - 5));
        let report = build(&ReportInputs {
            now_ms: NOW,
            active_clients: 3,
            blocked_addresses: 1,
            events: &events,
            ring_size: 256,
            client_threats: &[
                ClientThreat {
                    client_id: "calm".into(),
                    threat_level: 0.1,
                    patterns: vec![],
                    mitigation: None,
                    last_used_s: NOW / 1000,
                    requests_last_hour: 3,
                },
                ClientThreat {
                    client_id: "scanner".into(),
                    threat_level: 1.0,
                    patterns: vec!["data_harvesting".into()],
                    mitigation: Some("block"),
                    last_used_s: NOW / 1000,
                    requests_last_hour: 200,
                },
            ],
            authentications: (90, 10),
        });
        assert_eq!(report["summary"]["authentication_success_rate"], 0.9);
        assert_eq!(report["summary"]["authentications_last_hour"], 100);
        let threats = report["client_threat_levels"].as_array().unwrap();
        assert_eq!(threats[0]["client_id"], "scanner", "most threatening first");
        assert_eq!(threats[0]["mitigation"], "block");
        assert_eq!(threats[1]["threat_level"], 0.1);
        assert!(report["security_recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("abuse mitigation")));
        let summary = as_object(&report["summary"]);
        assert_eq!(
            summary["total_failed_auth_attempts"], 12,
            "the older one is out of the hour"
        );
        assert_eq!(summary["recent_security_events"], 16);
        assert_eq!(summary["blocked_ips"], 1);
        assert_eq!(summary["total_active_clients"], 3);
        assert_eq!(report["event_breakdown"]["blocked_ip_attempt"]["high"], 2);
        assert_eq!(report["top_threat_sources"][0]["ip_address"], "203.0.113.1");
        assert_eq!(report["top_threat_sources"][0]["threat_count"], 2);
        assert_eq!(report["system_health"]["rate_limit_violations"], 1);
        let advice = report["security_recommendations"].to_string();
        assert!(
            advice.contains("blocked") && advice.contains("12 failed"),
            "{advice}"
        );
        assert_eq!(report["recent_events"].as_array().unwrap().len(), 16);
    }

    #[test]
    fn a_quiet_report_says_so() {
        let report = build(&ReportInputs {
            now_ms: NOW,
            active_clients: 1,
            blocked_addresses: 0,
            events: &[],
            ring_size: 256,
            client_threats: &[],
            authentications: (0, 0),
        });
        assert_eq!(
            report["summary"]["authentication_success_rate"],
            Value::Null
        );
        assert_eq!(report["security_recommendations"][0], "no action needed");
        assert_eq!(report["summary"]["recent_security_events"], 0);
    }
}
