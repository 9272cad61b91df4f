//! RLS mode through the test host: the gRPC call a request makes and what each answer leads to.

use super::*;
use crate::ratelimit::rls::{
    CurrentLimit, DescriptorStatus, Duration, RateLimitRequest, RateLimitResponse,
};
use prost::Message;

fn rls(extra: Value) -> Value {
    let mut rls = json!({"cluster": "ratelimit", "domain": "mail", "timeout_ms": 40});
    for (k, v) in extra.as_object().unwrap() {
        rls[k] = v.clone();
    }
    json!({"rate_limiting": {"mode": "rls", "rls": rls}})
}

fn answer(code: i32, remaining: u32, reset: i64) -> Vec<u8> {
    RateLimitResponse {
        overall_code: code,
        statuses: vec![DescriptorStatus {
            code,
            current_limit: Some(CurrentLimit {
                requests_per_unit: 40,
                unit: 2,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(Duration {
                seconds: reset,
                nanos: 0,
            }),
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_client_request_asks_the_service_and_its_statuses_become_the_fields() {
    let (host, root) = configured(rls(json!({})));
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, action) = start(&host, &root);
    assert_eq!(action, Action::Pause);
    let (token, call) = host.last_call().unwrap();
    let grpc = call.grpc.expect("a gRPC call");
    assert_eq!(
        (grpc.service, grpc.method),
        (
            "envoy.service.ratelimit.v3.RateLimitService",
            "ShouldRateLimit"
        )
    );
    assert_eq!(
        call.upstream,
        crate::ratelimit::rls::grpc_target("ratelimit")
    );
    assert_eq!(call.timeout_ms, 40);
    let sent = RateLimitRequest::decode(call.body.as_slice()).unwrap();
    assert_eq!(sent.domain, "mail");
    assert_eq!(sent.descriptors[0].entries[0].value, "marketing");
    assert_eq!(
        sent.descriptors[0]
            .limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        40
    );

    host.answer_grpc(&answer(1, 7, 50));
    request.on_grpc_callout(&host, token, 0, 100);
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(host.upstream_header("x-client-id"), ["marketing"]);
    request.on_response_headers(&host);
    let fields = host.response_headers.borrow().clone();
    assert!(fields.contains(&("ratelimit-remaining".into(), "7".into())));
    assert!(fields.contains(&("ratelimit-reset".into(), "50".into())));
    assert_eq!(host.counter("ratelimit.api_send.allowed"), 1);
    assert_eq!(host.histograms.borrow()[0].0, "ratelimit.rls.latency_ms");
}

#[test]
fn over_limit_is_a_429_with_the_services_wait() {
    let (host, root) = configured(rls(json!({})));
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(&answer(2, 0, 23));
    request.on_grpc_callout(&host, token, 0, 100);
    assert_eq!(host.last_reply(), Some((429, "rate_limited".into())));
    let headers = host.replies.borrow()[0].1.clone();
    assert!(headers.contains(&("retry-after".into(), "23".into())));
    assert_eq!(host.counter("ratelimit.api_send.limited"), 1);
    assert_eq!(host.resumes.get(), 0);
}

#[test]
fn a_failed_call_follows_the_failure_mode() {
    // deny: a 503, counted by reason, logged once.
    let (host, root) = configured(rls(json!({})));
    for status in [4, 14] {
        api_key_request(&host, "/api/send/x", &[]);
        let (mut request, _) = start(&host, &root);
        let (token, _) = host.last_call().unwrap();
        request.on_grpc_callout(&host, token, status, 0);
        assert_eq!(
            host.last_reply(),
            Some((503, "rate_limit_unavailable".into()))
        );
    }
    assert_eq!(host.counter("ratelimit.rls.errors.timeout"), 1);
    assert_eq!(host.counter("ratelimit.rls.errors.status"), 1);
    let warned: Vec<String> = host
        .logs
        .borrow()
        .iter()
        .filter(|(l, _)| *l == LogLevel::Warn)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("rate limit service"), "{warned:?}");

    // Garbage is an error too, never an admission.
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(b"\x08\x00");
    request.on_grpc_callout(&host, token, 0, 2);
    assert_eq!(
        host.last_reply(),
        Some((503, "rate_limit_unavailable".into()))
    );
    assert_eq!(host.counter("ratelimit.rls.errors.garbage"), 1);

    // allow: counted in shared data instead.
    let (host, root) = configured(rls(json!({"failure_mode": "allow"})));
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    let (token, _) = host.last_call().unwrap();
    request.on_grpc_callout(&host, token, 14, 0);
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(host.counter("ratelimit.rls.local_fallback"), 1);
    assert_eq!(host.counter("ratelimit.api_send.allowed"), 1);
}

#[test]
fn a_refused_dispatch_and_stray_answers_are_handled() {
    let (host, root) = configured(rls(json!({})));
    host.faults.refuse_dispatch.set(true);
    api_key_request(&host, "/api/send/x", &[]);
    start(&host, &root);
    assert_eq!(
        host.last_reply(),
        Some((503, "rate_limit_unavailable".into()))
    );
    assert_eq!(host.counter("ratelimit.rls.errors.dispatch"), 1);
    host.faults.refuse_dispatch.set(false);

    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    let (token, _) = host.last_call().unwrap();
    request.on_grpc_callout(&host, token + 9, 0, 0);
    assert_eq!(host.counter("callouts.unexpected"), 1);
    host.answer_grpc(&answer(1, 3, 10));
    request.on_grpc_callout(&host, token, 0, 100);
    assert_eq!(host.resumes.get(), 1);
}

#[test]
fn anonymous_callers_stay_local_unless_asked() {
    let public = |host: &TestHost| {
        host.request(
            &[(":method", "GET"), (":path", "/health")],
            b"",
            Some("10.1.1.1:5000"),
        )
    };
    let (host, root) = configured(rls(json!({})));
    public(&host);
    let (_, action) = start(&host, &root);
    assert_eq!(action, Action::Continue);
    assert!(host.calls.borrow().is_empty());

    let (host, root) = configured(rls(json!({"count_addresses": true, "send_limits": false})));
    public(&host);
    let (_, action) = start(&host, &root);
    assert_eq!(action, Action::Pause);
    let (_, call) = host.last_call().unwrap();
    let sent = RateLimitRequest::decode(call.body.as_slice()).unwrap();
    assert_eq!(sent.descriptors.len(), 1);
    assert_eq!(sent.descriptors[0].entries[0].value, "10.1.1.1");
}

#[test]
fn rls_is_checked_at_configuration() {
    let refused = |extra: Value, field: &str| {
        let host = TestHost::new(&config(extra), NOW);
        let mut root = RootFilter::default();
        assert!(!root.on_configure(&host));
        let logs = host.logs.borrow();
        assert!(
            logs.iter().any(|(_, m)| m.contains(field)),
            "{field}: {logs:?}"
        );
    };
    refused(
        json!({"rate_limiting": {"mode": "rls"}}),
        "rate_limiting.rls",
    );
    refused(rls(json!({"cluster": ""})), "rate_limiting.rls.cluster");
    refused(
        rls(json!({"cluster": "c".repeat(121)})),
        "rate_limiting.rls.cluster",
    );
    refused(rls(json!({"domain": "a b"})), "rate_limiting.rls.domain");
    refused(
        rls(json!({"timeout_ms": 0})),
        "rate_limiting.rls.timeout_ms",
    );
    refused(rls(json!({"bogus": 1})), "bogus");
    let mut kong = rls(json!({"cluster": "127.0.0.1:8081"}));
    kong["host"] = json!("kong");
    refused(kong, "gRPC calls");
}

#[test]
fn batches_are_served_locally_and_a_refused_batch_is_asked_again_for_one() {
    let (host, root) = configured(rls(json!({"batch_size": 5})));
    let hits = |host: &TestHost| {
        let (_, call) = host.last_call().unwrap();
        RateLimitRequest::decode(call.body.as_slice())
            .unwrap()
            .hits_addend
    };
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    assert_eq!(hits(&host), 5);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(&answer(1, 10, 50));
    request.on_grpc_callout(&host, token, 0, 100);
    request.on_response_headers(&host);
    let fields = host.response_headers.borrow().clone();
    assert!(
        fields.contains(&("ratelimit-remaining".into(), "14".into())),
        "the service's 10 and the 4 this worker holds: {fields:?}"
    );
    // The next four need no call.
    for _ in 0..4 {
        api_key_request(&host, "/api/send/x", &[]);
        let (_, action) = start(&host, &root);
        assert_eq!(action, Action::Continue);
    }
    assert_eq!(host.calls.borrow().len(), 1);
    assert_eq!(host.counter("ratelimit.rls.batch.served"), 4);
    // The sixth asks again; the service refuses the batch, so it asks for this one alone.
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(&answer(2, 0, 30));
    request.on_grpc_callout(&host, token, 0, 100);
    assert_eq!(host.calls.borrow().len(), 3);
    assert_eq!(hits(&host), 1);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(&answer(1, 0, 30));
    request.on_grpc_callout(&host, token, 0, 100);
    assert_eq!(host.resumes.get(), 2, "admitted");
    assert_eq!(host.counter("ratelimit.rls.batch.retried"), 1);
    // Refused again alone: a 429.
    api_key_request(&host, "/api/send/x", &[]);
    let (mut request, _) = start(&host, &root);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(&answer(2, 0, 30));
    request.on_grpc_callout(&host, token, 0, 100);
    let (token, _) = host.last_call().unwrap();
    host.answer_grpc(&answer(2, 0, 30));
    request.on_grpc_callout(&host, token, 0, 100);
    assert_eq!(host.last_reply(), Some((429, "rate_limited".into())));
    let refused = rls(json!({"batch_size": 0}));
    let host = TestHost::new(&config(refused), NOW);
    assert!(!RootFilter::default().on_configure(&host));
}
