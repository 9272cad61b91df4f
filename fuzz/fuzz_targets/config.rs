//! Configuration parsing and compiling: any bytes give a configuration or a field-naming error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = api_warden::config::parse(data) {
        assert!(!e.field.is_empty() || !e.reason.is_empty());
    }
});
