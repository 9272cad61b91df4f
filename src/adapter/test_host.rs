//! A host double: records what the adapter asked for and lets a test inject the faults real
//! hosts show (refused calls, header edits that do nothing, CAS races, missing properties).

use super::{Host, HostError, HostResult, LogLevel};
use crate::callout::CalloutSpec;
use crate::store::{MemoryStore, SharedStore, StoreError, Versioned};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A local reply: status, headers, body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);
/// A callout answer: `:status` (absent: no answer) and body.
pub type Answer = (Option<Vec<u8>>, Vec<u8>);

/// Faults to inject.
#[derive(Debug, Default)]
pub struct Faults {
    /// Header removals succeed but change nothing (Kong's host).
    pub ignore_removals: Cell<bool>,
    /// Header sets succeed but change nothing.
    pub ignore_sets: Cell<bool>,
    pub refuse_dispatch: Cell<bool>,
    pub refuse_tick: Cell<bool>,
    pub refuse_headers: Cell<bool>,
    /// Every shared-data operation fails.
    pub store_down: Cell<bool>,
    /// The next unconditional write to an absent key loses a race: another worker creates the
    /// key first and this write gets CasMismatch (as on Kong's host).
    pub create_races: Cell<u32>,
    /// An unconditional write to an existing key is CasMismatch (Kong's host).
    pub kong_writes: Cell<bool>,
}

/// The shared store of the double, with its faults.
#[derive(Default)]
pub struct TestStore {
    pub memory: MemoryStore,
    faults: std::rc::Rc<Faults>,
    calls: std::rc::Rc<RefCell<HashMap<&'static str, u64>>>,
}

fn count(calls: &RefCell<HashMap<&'static str, u64>>, name: &'static str) {
    *calls.borrow_mut().entry(name).or_default() += 1;
}

impl SharedStore for TestStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        count(&self.calls, "store.get");
        if self.faults.store_down.get() {
            return Err(StoreError::Unavailable);
        }
        self.memory.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        count(&self.calls, "store.set");
        if self.faults.store_down.get() {
            return Err(StoreError::Unavailable);
        }
        let exists = self.memory.get(key)?.is_some();
        if cas.is_none() && !exists && self.faults.create_races.get() > 0 {
            self.faults
                .create_races
                .set(self.faults.create_races.get() - 1);
            self.memory.set(key, b"", None)?;
            return Err(StoreError::CasMismatch);
        }
        if cas.is_none() && exists && self.faults.kong_writes.get() {
            return Err(StoreError::CasMismatch);
        }
        self.memory.set(key, value, cas)
    }
}

#[derive(Default)]
pub struct TestHost {
    pub now_ms: Cell<u64>,
    pub configuration: RefCell<Option<Vec<u8>>>,
    pub tick_ms: Cell<Option<u32>>,
    pub request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub request_body: RefCell<Vec<u8>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    /// What the filter published (`set_property`).
    pub published: RefCell<HashMap<String, Vec<u8>>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    /// Local replies sent: status, headers, body.
    pub replies: RefCell<Vec<Reply>>,
    pub resets: Cell<u32>,
    pub resumes: Cell<u32>,
    /// Calls dispatched, with their tokens.
    pub calls: RefCell<Vec<(u32, CalloutSpec)>>,
    next_token: Cell<u32>,
    /// The callout answer being delivered: status and body.
    pub answer: RefCell<Option<Answer>>,
    pub store: TestStore,
    pub counters: RefCell<HashMap<String, u64>>,
    pub histograms: RefCell<Vec<(String, u64)>>,
    pub gauges: RefCell<HashMap<String, u64>>,
    /// What `memory_bytes` reports.
    pub memory: Cell<u64>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub faults: std::rc::Rc<Faults>,
    /// How many times each host call was made (shared-data reads and writes as `store.get`
    /// and `store.set`), to count what a request costs the host.
    pub host_calls: std::rc::Rc<RefCell<HashMap<&'static str, u64>>>,
}

impl TestHost {
    pub fn new(configuration: &str, now_ms: u64) -> Self {
        let faults = std::rc::Rc::new(Faults::default());
        let host_calls = std::rc::Rc::new(RefCell::new(HashMap::new()));
        let host = Self {
            store: TestStore {
                memory: MemoryStore::new(),
                faults: faults.clone(),
                calls: host_calls.clone(),
            },
            faults,
            host_calls,
            ..Self::default()
        };
        host.now_ms.set(now_ms);
        *host.configuration.borrow_mut() = Some(configuration.as_bytes().to_vec());
        host
    }

    /// A new request on this host: its headers, body and caller address.
    pub fn request(&self, headers: &[(&str, &str)], body: &[u8], address: Option<&str>) {
        // Setting up a request is not the filter's work: allocation budgets leave it out.
        #[cfg(test)]
        let _uncounted = crate::alloc_count::paused();
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        *self.request_body.borrow_mut() = body.to_vec();
        let mut props = self.properties.borrow_mut();
        props.clear();
        if let Some(a) = address {
            props.insert("source.address".into(), a.as_bytes().to_vec());
        }
        self.response_headers.borrow_mut().clear();
    }

    /// Sets the answer the next `on_callout` reads (`None` status: no answer at all).
    pub fn answer_with(&self, status: Option<u16>, body: &str) {
        *self.answer.borrow_mut() = Some((
            status.map(|s| s.to_string().into_bytes()),
            body.as_bytes().to_vec(),
        ));
    }

    /// Sets the message the next `on_grpc_callout` reads.
    pub fn answer_grpc(&self, message: &[u8]) {
        *self.answer.borrow_mut() = Some((None, message.to_vec()));
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }

    pub fn last_reply(&self) -> Option<(u16, String)> {
        self.replies.borrow().last().map(|(status, _, body)| {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            (*status, v["error"].as_str().unwrap_or_default().to_string())
        })
    }

    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        self.request_headers
            .borrow()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn last_call(&self) -> Option<(u32, CalloutSpec)> {
        self.calls.borrow().last().cloned()
    }

    /// A filter configured with `configuration` and sent one API-key request that pauses for a
    /// call: the host, the root, the paused request and its call (the bench helpers print what
    /// the filter itself asks a store or a service).
    pub fn paused_on_a_call(
        configuration: &str,
        api_key: &str,
        now_ms: u64,
    ) -> Result<
        (
            TestHost,
            super::root::RootFilter,
            super::request::RequestFilter,
            u32,
            CalloutSpec,
        ),
        String,
    > {
        let host = TestHost::new(configuration, now_ms);
        let mut root = super::root::RootFilter::default();
        if !root.on_configure(&host) {
            return Err(format!("configuration refused: {:?}", host.logs.borrow()));
        }
        host.request(
            &[
                (":method", "GET"),
                (":path", "/api/send/bulk"),
                ("x-api-key", api_key),
            ],
            b"",
            Some("127.0.0.1:5000"),
        );
        let mut request = root.new_request();
        if request.on_request_headers(&host, true) != super::Action::Pause {
            return Err(format!("no call: {:?}", host.replies.borrow().last()));
        }
        let (token, call) = host.last_call().ok_or("no call")?;
        Ok((host, root, request, token, call))
    }
}

/// A rate limit service's `OK` for one descriptor, with its limit (10^9 a minute), what remains
/// and the reset, as `tools/rls-server` answers `make bench`'s RLS requests.
pub fn rls_granted() -> Vec<u8> {
    use crate::ratelimit::rls::{CurrentLimit, DescriptorStatus, Duration, RateLimitResponse};
    use prost::Message;
    RateLimitResponse {
        overall_code: 1,
        statuses: vec![DescriptorStatus {
            code: 1,
            current_limit: Some(CurrentLimit {
                requests_per_unit: 1_000_000_000,
                unit: 2,
            }),
            limit_remaining: 999_999_999,
            duration_until_reset: Some(Duration {
                seconds: 59,
                nanos: 0,
            }),
        }],
    }
    .encode_to_vec()
}

impl Host for TestHost {
    fn now_ms(&self) -> HostResult<u64> {
        count(&self.host_calls, "now_ms");
        Ok(self.now_ms.get())
    }

    fn plugin_configuration(&self) -> HostResult<Option<Vec<u8>>> {
        count(&self.host_calls, "plugin_configuration");
        Ok(self.configuration.borrow().clone())
    }

    fn set_tick_period_ms(&self, period: u32) -> HostResult<()> {
        count(&self.host_calls, "set_tick_period_ms");
        if self.faults.refuse_tick.get() {
            return Err(HostError(2));
        }
        self.tick_ms.set(Some(period));
        Ok(())
    }

    fn request_headers(&self) -> HostResult<crate::wire::HeaderMap> {
        count(&self.host_calls, "request_headers");
        if self.faults.refuse_headers.get() {
            return Err(HostError(2));
        }
        // As a proxy sends it: the whole map in the ABI's encoding, in one buffer.
        let headers = self.request_headers.borrow();
        Ok(crate::wire::HeaderMap::from_pairs(
            headers.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())),
        ))
    }

    fn request_body(&self, size: usize) -> HostResult<Option<Vec<u8>>> {
        count(&self.host_calls, "request_body");
        let body = self.request_body.borrow();
        Ok(Some(body[..size.min(body.len())].to_vec()))
    }

    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        count(&self.host_calls, "property");
        Ok(self.properties.borrow().get(&path.join(".")).cloned())
    }

    fn set_property(&self, name: &str, value: &[u8]) -> HostResult<()> {
        count(&self.host_calls, "set_property");
        self.published
            .borrow_mut()
            .insert(name.to_string(), value.to_vec());
        Ok(())
    }

    fn remove_request_header(&self, name: &str) -> HostResult<()> {
        count(&self.host_calls, "remove_request_header");
        if !self.faults.ignore_removals.get() {
            self.request_headers
                .borrow_mut()
                .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        }
        Ok(())
    }

    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()> {
        count(&self.host_calls, "set_request_header");
        if self.faults.ignore_sets.get() {
            return Ok(());
        }
        let mut headers = self.request_headers.borrow_mut();
        match headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(existing) => existing.1 = value.as_bytes().to_vec(),
            None => headers.push((name.to_string(), value.as_bytes().to_vec())),
        }
        Ok(())
    }

    fn request_header_map(&self) -> HostResult<Vec<u8>> {
        count(&self.host_calls, "request_header_map");
        if self.faults.refuse_headers.get() {
            return Err(HostError(2));
        }
        let headers = self.request_headers.borrow();
        Ok(crate::wire::encode_pairs(
            headers.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())),
        ))
    }

    fn set_response_header(&self, name: &str, value: &str) -> HostResult<()> {
        count(&self.host_calls, "set_response_header");
        self.response_headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
        count(&self.host_calls, "send_reply");
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.replies
            .borrow_mut()
            .push((status, headers, body.to_vec()));
        Ok(())
    }

    fn reset_request(&self) -> HostResult<()> {
        count(&self.host_calls, "reset_request");
        self.resets.set(self.resets.get() + 1);
        Ok(())
    }

    fn resume_request(&self) -> HostResult<()> {
        count(&self.host_calls, "resume_request");
        self.resumes.set(self.resumes.get() + 1);
        Ok(())
    }

    fn dispatch(&self, call: &CalloutSpec) -> HostResult<u32> {
        count(&self.host_calls, "dispatch");
        if self.faults.refuse_dispatch.get() {
            return Err(HostError(2));
        }
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.calls.borrow_mut().push((token, call.clone()));
        Ok(token)
    }

    fn callout_status(&self) -> HostResult<Option<Vec<u8>>> {
        count(&self.host_calls, "callout_status");
        Ok(self.answer.borrow().as_ref().and_then(|(s, _)| s.clone()))
    }

    fn callout_body(&self, size: usize) -> HostResult<Option<Vec<u8>>> {
        count(&self.host_calls, "callout_body");
        Ok(self
            .answer
            .borrow()
            .as_ref()
            .map(|(_, b)| b[..size.min(b.len())].to_vec()))
    }

    fn grpc_message(&self, size: usize) -> HostResult<Option<Vec<u8>>> {
        count(&self.host_calls, "grpc_message");
        Ok(self
            .answer
            .borrow()
            .as_ref()
            .map(|(_, b)| b[..size.min(b.len())].to_vec()))
    }

    fn store(&self) -> &dyn SharedStore {
        &self.store
    }

    fn increment(&self, metric: &str) {
        count(&self.host_calls, "increment");
        *self
            .counters
            .borrow_mut()
            .entry(metric.to_string())
            .or_default() += 1;
    }

    fn record(&self, metric: &str, value: u64) {
        count(&self.host_calls, "record");
        self.histograms
            .borrow_mut()
            .push((metric.to_string(), value));
    }

    fn gauge(&self, metric: &str, value: u64) {
        count(&self.host_calls, "gauge");
        self.gauges.borrow_mut().insert(metric.to_string(), value);
    }

    fn memory_bytes(&self) -> Option<u64> {
        count(&self.host_calls, "memory_bytes");
        Some(Cell::get(&self.memory))
    }

    fn log(&self, level: LogLevel, message: &str) {
        count(&self.host_calls, "log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}
