//! A rate limit service for api-warden's end-to-end tests and benchmarks.
//!
//! It answers `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` the way
//! envoyproxy/ratelimit does for descriptors that carry a `limit` override: each such descriptor
//! is counted under its own entries with the override's number and unit. Descriptors without one
//! are matched against the limits in `--limits` (limitador's own form: namespace, max_value,
//! seconds, conditions, variables; the namespace is the request's domain), with
//! `descriptors[0].<key>` naming the request's first descriptor's entries. Counting is
//! limitador's, in Redis (`--redis`), so several servers, and so several proxies, share the
//! counts. limitador's Redis storage reads the counters, then increments them: two decisions at
//! once can both pass the last free admission (its documentation says so). `--exact` makes this
//! server take one decision at a time, so everything it decides is exact (the end-to-end tests
//! use it); without it decisions run concurrently, as limitador-server runs them (the benchmark).
//! Every descriptor gets a status: its limit, what remains and when it resets.
//!
//! Usage: `rls-server --listen 127.0.0.1:PORT --redis redis://127.0.0.1:6379 [--limits FILE]
//! [--exact]`

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration;
use limitador::counter::Counter;
use limitador::limit::{Context, Limit};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use std::collections::HashMap;
use std::net::SocketAddr;
use tonic::{Request, Response, Status};

#[derive(serde::Deserialize)]
struct LimitFile {
    namespace: String,
    max_value: u64,
    seconds: u64,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    variables: Vec<String>,
}

struct Service {
    limiter: AsyncRateLimiter,
    /// Held for each decision with `--exact`.
    one_at_a_time: Option<tokio::sync::Mutex<()>>,
}

fn unit_seconds(unit: i32) -> Option<u64> {
    // envoy.type.v3.RateLimitUnit
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3600),
        4 => Some(86_400),
        _ => None,
    }
}

fn unit_of(seconds: u64) -> Unit {
    match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86_400 => Unit::Day,
        _ => Unit::Unknown,
    }
}

fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Service {
    /// The limit an override asks for: counted under exactly this descriptor's entries.
    fn override_limit(
        &self,
        domain: &str,
        index: usize,
        entries: &[(String, String)],
        max: u64,
        seconds: u64,
    ) -> Result<Limit, Status> {
        let mut conditions = Vec::new();
        for (key, value) in entries {
            let source = format!("descriptors[{index}][{}] == {}", quoted(key), quoted(value));
            let predicate = source
                .as_str()
                .try_into()
                .map_err(|e| Status::invalid_argument(format!("{source}: {e:?}")))?;
            conditions.push(predicate);
        }
        let mut name = String::new();
        for (k, v) in entries {
            name.push_str(&format!("{k}={v};"));
        }
        let mut limit = Limit::new(domain, max, seconds, conditions, Vec::new());
        limit.set_name(format!("{name}{max}/{seconds}s"));
        self.limiter.add_limit(limit.clone());
        Ok(limit)
    }
}

fn status_of(counter: &Counter, limited_by: Option<&str>) -> DescriptorStatus {
    let remaining = counter.remaining().unwrap_or(counter.max_value());
    let over = limited_by.is_some_and(|n| counter.limit().name() == Some(n));
    let reset = counter.expires_in().unwrap_or(counter.window());
    DescriptorStatus {
        code: if over { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: Some(RateLimit {
            name: counter.limit().name().unwrap_or_default().to_string(),
            requests_per_unit: u32::try_from(counter.max_value()).unwrap_or(u32::MAX),
            unit: unit_of(counter.window().as_secs()) as i32,
        }),
        limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(Duration {
            seconds: reset.as_secs() as i64,
            nanos: reset.subsec_nanos() as i32,
        }),
        quota: None,
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        if request.domain.is_empty() {
            return Err(Status::invalid_argument("domain is empty"));
        }
        let mut bindings = Vec::new();
        for (index, d) in request.descriptors.iter().enumerate() {
            let entries: Vec<(String, String)> = d
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            if let Some(o) = &d.limit {
                let seconds = unit_seconds(o.unit)
                    .ok_or_else(|| Status::invalid_argument("unsupported unit"))?;
                self.override_limit(
                    &request.domain,
                    index,
                    &entries,
                    u64::from(o.requests_per_unit),
                    seconds,
                )?;
            }
            bindings.push(entries.into_iter().collect::<HashMap<_, _>>());
        }
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_string(), bindings);
        let hits = u64::from(request.hits_addend.max(1));
        let namespace = request.domain.as_str().into();
        let _turn = match &self.one_at_a_time {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let result = self
            .limiter
            .check_rate_limited_and_update(&namespace, &ctx, hits)
            .await
            .map_err(|e| Status::unavailable(format!("storage: {e}")))?;
        let limited_by = result.limit_name.as_deref();
        let statuses = result
            .counters
            .iter()
            .map(|c| status_of(c, if result.limited { limited_by } else { None }))
            .collect();
        let overall = if result.limited {
            Code::OverLimit
        } else {
            Code::Ok
        };
        Ok(Response::new(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
            ..RateLimitResponse::default()
        }))
    }
}

fn argument(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = argument(&args, "--listen")
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()?;
    let redis = argument(&args, "--redis").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let storage = AsyncRedisStorage::new(&redis).await?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    if let Some(path) = argument(&args, "--limits") {
        let limits: Vec<LimitFile> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        for l in limits {
            let conditions = l
                .conditions
                .iter()
                .map(|c| c.as_str().try_into())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{e:?}"))?;
            let variables = l
                .variables
                .iter()
                .map(|v| v.as_str().try_into())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{e:?}"))?;
            limiter.add_limit(Limit::new(
                l.namespace.as_str(),
                l.max_value,
                l.seconds,
                conditions,
                variables,
            ));
        }
    }
    let service = Service {
        limiter,
        one_at_a_time: args
            .iter()
            .any(|a| a == "--exact")
            .then(|| tokio::sync::Mutex::new(())),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("rls-server listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
    Ok(())
}
