use super::*;
use crate::ratelimit::Limits;

const L: Limits = Limits {
    per_minute: 50,
    per_hour: 500,
    per_day: 5000,
    burst: 10,
};

fn client(key: &str, rule: &str) -> Target {
    Target {
        subject: Subject::Client {
            key: key.to_string(),
            registered: false,
        },
        rule: crate::ratelimit::RuleName::new(rule),
        limits: L,
    }
}

fn entries(d: &Descriptor) -> Vec<(&str, &str)> {
    d.entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect()
}

fn status(code: i32, limit: u32, unit: i32, remaining: u32, reset: i64) -> DescriptorStatus {
    DescriptorStatus {
        code,
        current_limit: Some(CurrentLimit {
            requests_per_unit: limit,
            unit,
        }),
        limit_remaining: remaining,
        duration_until_reset: Some(Duration {
            seconds: reset,
            nanos: 0,
        }),
    }
}

fn answer(overall_code: i32, statuses: Vec<DescriptorStatus>) -> Vec<u8> {
    RateLimitResponse {
        overall_code,
        statuses,
    }
    .encode_to_vec()
}

#[test]
fn a_request_names_client_rule_and_window_with_the_configured_numbers() {
    let bytes = request("mail", &client("team:a:api_send", "api_send"), true, 1);
    let r = RateLimitRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!((r.domain.as_str(), r.hits_addend), ("mail", 1));
    assert_eq!(r.descriptors.len(), 3);
    assert_eq!(
        entries(&r.descriptors[0]),
        [
            ("client_id", "team:a"),
            ("rule", "api_send"),
            ("window", "minute")
        ]
    );
    let limits: Vec<(u32, i32)> = r
        .descriptors
        .iter()
        .map(|d| {
            let l = d.limit.as_ref().unwrap();
            (l.requests_per_unit, l.unit)
        })
        .collect();
    assert_eq!(limits, [(50, 2), (500, 3), (5000, 4)]);
    assert_eq!(entries(&r.descriptors[2])[2], ("window", "day"));
}

#[test]
fn without_send_limits_one_descriptor_and_the_service_decides() {
    let bytes = request("aw", &client("c:default", "default"), false, 1);
    let r = RateLimitRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(r.descriptors.len(), 1);
    assert_eq!(
        entries(&r.descriptors[0]),
        [("client_id", "c"), ("rule", "default")]
    );
    assert!(r.descriptors[0].limit.is_none());
}

#[test]
fn anonymous_callers_are_named_by_address() {
    let mut v4 = [0u8; 16];
    v4[10] = 0xff;
    v4[11] = 0xff;
    v4[12..].copy_from_slice(&[192, 0, 2, 7]);
    let t = Target {
        subject: Subject::Address(v4),
        rule: crate::ratelimit::RuleName::new("address"),
        limits: L,
    };
    let r = RateLimitRequest::decode(request("aw", &t, false, 1).as_slice()).unwrap();
    assert_eq!(
        entries(&r.descriptors[0]),
        [("remote_address", "192.0.2.7"), ("rule", "address")]
    );
    let v6: [u8; 16] = "2001:db8:1:2::"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let t = Target {
        subject: Subject::Address(v6),
        ..t
    };
    let r = RateLimitRequest::decode(request("aw", &t, false, 1).as_slice()).unwrap();
    assert_eq!(r.descriptors[0].entries[0].value, "2001:db8:1:2::/64");
    let t = Target {
        subject: Subject::Address(crate::ratelimit::UNKNOWN_ADDRESS),
        ..t
    };
    let r = RateLimitRequest::decode(request("aw", &t, false, 1).as_slice()).unwrap();
    assert_eq!(r.descriptors[0].entries[0].value, "unknown");
}

#[test]
fn the_grpc_target_is_a_grpc_service_naming_the_cluster() {
    let target = grpc_target("ratelimit");
    assert_eq!(target.as_bytes(), b"\x0a\x0b\x0a\x09ratelimit");
    let long = "c".repeat(MAX_CLUSTER_NAME);
    let target = grpc_target(&long);
    assert_eq!(target.len(), MAX_CLUSTER_NAME + 4, "single-byte lengths");
    let decoded = GrpcService::decode(target.as_bytes()).unwrap();
    assert_eq!(decoded.envoy_grpc.unwrap().cluster_name, long);
}

#[test]
fn an_admission_describes_the_quota_closest_to_exhaustion() {
    let body = answer(
        OK,
        vec![
            status(OK, 50, 2, 12, 40),
            status(OK, 500, 3, 3, 1800),
            status(OK, 5000, 4, 4000, 80_000),
        ],
    );
    let d = parse_response(&body).unwrap();
    assert!(d.allowed);
    assert_eq!((d.limit, d.remaining, d.reset), (500, 3, 1800));
    assert_eq!(d.retry_after, None);
}

#[test]
fn a_refusal_waits_for_the_longest_exhausted_quota() {
    let body = answer(
        OVER_LIMIT,
        vec![
            status(OVER_LIMIT, 50, 2, 0, 17),
            status(OVER_LIMIT, 500, 3, 0, 900),
            status(OK, 5000, 4, 10, 80_000),
        ],
    );
    let d = parse_response(&body).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(900));
    assert_eq!((d.limit, d.remaining), (50, 0));
    // A fraction of a second left is a whole second to wait.
    let mut s = status(OVER_LIMIT, 5, 1, 0, 0);
    s.duration_until_reset = Some(Duration {
        seconds: 0,
        nanos: 300_000_000,
    });
    assert_eq!(
        parse_response(&answer(OVER_LIMIT, vec![s]))
            .unwrap()
            .retry_after,
        Some(1)
    );
    // No reset given: the quota's window.
    let mut s = status(OVER_LIMIT, 5, 3, 0, 0);
    s.duration_until_reset = None;
    assert_eq!(
        parse_response(&answer(OVER_LIMIT, vec![s]))
            .unwrap()
            .retry_after,
        Some(3600)
    );
}

#[test]
fn a_service_without_statuses_gives_no_quota() {
    let d = parse_response(&answer(OK, vec![])).unwrap();
    assert!(d.allowed && d.limit == 0);
    let d = parse_response(&answer(OVER_LIMIT, vec![])).unwrap();
    assert_eq!((d.allowed, d.limit, d.retry_after), (false, 0, Some(60)));
    let fields = crate::ratelimit::headers::fields(&d, &L);
    assert_eq!(fields, [("retry-after", "60".to_string())]);
}

#[test]
fn anything_else_is_an_error() {
    assert_eq!(parse_response(&answer(0, vec![])), Err(RlsError::Garbage));
    assert_eq!(parse_response(&answer(7, vec![])), Err(RlsError::Garbage));
    assert_eq!(parse_response(b"\xff\xff\xff"), Err(RlsError::Garbage));
    // An empty message is UNKNOWN: never an admission.
    assert_eq!(parse_response(b""), Err(RlsError::Garbage));
}

#[test]
fn grpc_statuses_map_onto_the_failure_reasons() {
    use crate::callout::CalloutAnswer;
    let ok = CalloutAnswer::from_grpc(0, answer(OK, vec![]));
    assert_eq!(ok.failure_reason(), None);
    assert_eq!(
        CalloutAnswer::from_grpc(4, vec![]).failure_reason(),
        Some("timeout")
    );
    assert_eq!(
        CalloutAnswer::from_grpc(14, vec![]).failure_reason(),
        Some("status")
    );
    assert_eq!(
        CalloutAnswer::from_grpc(13, b"x".to_vec()),
        CalloutAnswer::Response {
            status: 502,
            body: vec![]
        }
    );
}
