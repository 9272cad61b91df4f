//! Allowlist entries and caller addresses: no panic; an address always matches its own /32 or
//! /128.
#![no_main]
use api_warden::authz::ip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let allowed: Vec<_> = text
        .split(',')
        .filter_map(|entry| ip::parse_allowed("fuzz", entry).ok())
        .collect();
    let source = ip::parse_source(data);
    let _ = ip::allows(&allowed, source);
    if let Some(addr) = source {
        let own = ip::parse_allowed("fuzz", &addr.to_string()).expect("an address is an entry");
        assert!(ip::allows(&[own], Some(addr)));
    }
});
