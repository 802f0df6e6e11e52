//! A run report from arbitrary bytes, as the server decodes a posted one:
//! never a panic, and what decodes encodes to JSON that decodes to the
//! same report.

#![no_main]

use drover_catalog::Report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = serde_json::from_slice::<Report>(data) else {
        return;
    };
    let json = serde_json::to_vec(&report).expect("a decoded report encodes");
    let again: Report = serde_json::from_slice(&json).expect("an encoded report decodes");
    let json_again = serde_json::to_vec(&again).expect("it encodes again");
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&json_again),
        "report JSON round trip"
    );
});
