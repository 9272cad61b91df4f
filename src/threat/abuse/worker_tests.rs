use super::*;
use crate::engine::record::{AuthRecord, DenialRecord};
use crate::store::MemoryStore;
use crate::threat::abuse::{compile, RawAbuse};

const T0: u64 = 1_800_000_000;

fn ids() -> Vec<String> {
    (0..8).map(|n| format!("client-{n}")).collect()
}

fn setup() -> (AbuseSettings, MemoryStore) {
    let settings = compile(&RawAbuse::default()).unwrap();
    let store = MemoryStore::new();
    prepare(&settings, &ids(), &store).unwrap();
    (settings, store)
}

fn request(now_s: u64, client: Option<usize>, path: &str, address: [u8; 4]) -> Record {
    let mut r = Record::new(now_s * 1000, b"POST", path.as_bytes());
    r.finished_ms = now_s * 1000;
    r.client = client.and_then(|i| ids().get(i).cloned());
    r.address = Some(IpAddr::from(address));
    r.auth = Some(AuthRecord {
        method: crate::auth::AuthMethod::ApiKey,
        success: client.is_some(),
    });
    r
}

#[test]
fn two_workers_scans_add_up_and_both_enforce_the_block() {
    let (s, store) = setup();
    let (mut a, mut b) = (AbuseWorker::default(), AbuseWorker::default());
    for id in 1..=30u64 {
        let worker = if id % 2 == 0 { &mut a } else { &mut b };
        let r = request(T0, Some(2), &format!("/api/contacts/{id}"), [10, 0, 0, 1]);
        worker.observe(&s, &r);
    }
    // Neither worker saw a run of ten; together they saw thirty.
    let first = a.flush(&s, &ids(), &store, T0);
    assert!(first
        .events
        .iter()
        .all(|e| e.kind != EventType::AbuseMitigation));
    let second = b.flush(&s, &ids(), &store, T0);
    let mitigation = second
        .events
        .iter()
        .find(|e| e.kind == EventType::AbuseMitigation)
        .expect("a mitigation event");
    assert_eq!(mitigation.client_id.as_deref(), Some("client-2"));
    let details = mitigation.details.as_ref().unwrap();
    assert_eq!(details["patterns"][0], "data_harvesting");
    assert_eq!(details["mitigation"], "severe");
    assert_eq!(mitigation.level, ThreatLevel::High);
    // Worker a learns of it on the client's next request (next second).
    let m = a.mitigation(&store, "client-2", T0 + 1).unwrap().unwrap();
    assert_eq!(m.grade, mitigation::Grade::Severe);
    assert!(a.mitigation(&store, "client-3", T0 + 1).unwrap().is_none());
    // The profile remembers the assessment for the report.
    let (bytes, _) = store.get(&profile_key("client-2")).unwrap().unwrap();
    let p = Profile::decode(&bytes).unwrap();
    assert_eq!(p.total, 30);
    assert_eq!(p.detected, ["data_harvesting"]);
}

#[test]
fn a_shared_template_across_clients_is_a_distributed_attack() {
    let (s, store) = setup();
    // Clients 0-2 on one worker, 3-4 on another: neither sees five clients.
    let (mut a, mut b) = (AbuseWorker::default(), AbuseWorker::default());
    for n in 0..20u8 {
        let client = usize::from(n % 5);
        let mut r = request(T0, Some(client), "/api/send", [10, 0, 0, n % 3]);
        r.content_hash = Some(77);
        let w = if client < 3 { &mut a } else { &mut b };
        w.observe(&s, &r);
    }
    let first = a.flush(&s, &ids(), &store, T0);
    assert!(first.events.is_empty(), "{:?}", first.events);
    let out = b.flush(&s, &ids(), &store, T0);
    let kinds: Vec<EventType> = out.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventType::DistributedAttack)
            .count(),
        1
    );
    // Each of the five clients, including those worker b never saw, is under a severe
    // mitigation (spam_injection at 0.7).
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventType::AbuseMitigation)
            .count(),
        5
    );
    for c in 0..5 {
        let m = mitigation::read(&store, &format!("client-{c}"))
            .unwrap()
            .unwrap();
        assert_eq!(m.grade, mitigation::Grade::Severe);
        assert_eq!(m.patterns, ["spam_injection"]);
    }
}

#[test]
fn stuffing_is_seen_across_workers_and_ticks() {
    let (s, store) = setup();
    let (mut a, mut b) = (AbuseWorker::default(), AbuseWorker::default());
    for n in 0..40u8 {
        let mut r = request(T0, None, "/api/send", [192, 0, 2, n / 2]);
        r.denial = Some(DenialRecord {
            status: 401,
            code: "invalid_api_key",
        });
        a.observe(&s, &r);
    }
    let out = a.flush(&s, &ids(), &store, T0);
    assert!(out
        .events
        .iter()
        .any(|e| e.kind == EventType::CredentialStuffing));
    assert!(a.stuffing(T0 + 1));
    assert!(!b.stuffing(T0 + 1));
    let out = b.flush(&s, &ids(), &store, T0 + 1);
    assert!(out
        .events
        .iter()
        .all(|e| e.kind != EventType::CredentialStuffing));
    assert!(b.stuffing(T0 + 2), "learnt from shared data");
    assert!(!b.stuffing(T0 + 3601));
}

#[test]
fn coordinated_patterns_are_reported_once_per_period() {
    let (s, store) = setup();
    let m = Mitigation {
        grade: mitigation::Grade::Severe,
        threat: 0.8,
        patterns: vec!["api_scraping".into()],
        since: T0,
        until: T0 + 3600,
        backoff: 2,
        next_allowed: T0,
    };
    for c in 0..3 {
        mitigation::install(&store, &format!("client-{c}"), &m, T0).unwrap();
    }
    let (mut a, mut b) = (AbuseWorker::default(), AbuseWorker::default());
    let out = a.flush(&s, &ids(), &store, T0);
    let coordinated: Vec<&SecurityEvent> = out
        .events
        .iter()
        .filter(|e| e.kind == EventType::CoordinatedAttack)
        .collect();
    assert_eq!(coordinated.len(), 1);
    assert_eq!(
        coordinated[0].details.as_ref().unwrap()["affected_count"],
        3
    );
    let out = b.flush(&s, &ids(), &store, T0 + 1);
    assert!(
        out.events
            .iter()
            .all(|e| e.kind != EventType::CoordinatedAttack),
        "one worker per period"
    );
}

#[test]
fn a_legitimate_mixed_workload_is_never_mitigated() {
    let (s, store) = setup();
    let mut w = AbuseWorker::default();
    for second in 0..120u64 {
        for client in 0..4usize {
            let path = match (second + client as u64) % 4 {
                0 => "/api/validate".to_string(),
                1 => format!("/api/campaigns/{}", second % 3),
                _ => "/api/send".to_string(),
            };
            let mut r = request(T0 + second, Some(client), &path, [10, 0, 1, client as u8]);
            r.content_hash = Some(second * 10 + client as u64);
            w.observe(&s, &r);
        }
        let out = w.flush(&s, &ids(), &store, T0 + second);
        assert!(
            out.events
                .iter()
                .all(|e| e.kind != EventType::AbuseMitigation),
            "{:?}",
            out.events
        );
    }
    assert_eq!(w.dropped_signatures, 0);
}

#[test]
fn signatures_between_ticks_are_bounded() {
    let (s, _) = setup();
    let mut w = AbuseWorker::default();
    for n in 0..1000u64 {
        let mut r = request(T0, Some(1), "/api/send", [10, 0, 0, 1]);
        r.content_hash = Some(n);
        w.observe(&s, &r);
    }
    assert_eq!(w.dropped_signatures, 1000 - MAX_SIGHTINGS as u64);
}
