//! Path normalisation and pattern matching: no panic; a normalised path normalises to itself;
//! a pattern that matches a path also matches it ignoring case.
#![no_main]
use api_warden::authz::endpoints::EndpointPattern;
use api_warden::authz::path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pattern, raw) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"/api/*"[..], data),
    };
    let Ok(target) = path::normalise(raw) else {
        return;
    };
    let again = path::normalise(target.path.as_bytes()).expect("a normalised path is valid");
    assert_eq!(again.path, target.path, "normalising is idempotent");
    if let Ok(p) = EndpointPattern::parse("fuzz", &String::from_utf8_lossy(pattern)) {
        if p.matches(&target.path) {
            assert!(p.matches_ignoring_case(&target.path));
        }
        let _ = p.covers_ignoring_case(&target.path);
    }
});
