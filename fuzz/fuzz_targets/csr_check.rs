//! The server's certificate request check from arbitrary bytes: never a
//! panic. Input: the node name on the first line, the PEM after it. A
//! request that passes is for that name, and its re-encoded PEM passes
//! again with the same key.

#![no_main]

use drover_catalog::csr::check_csr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (name, pem) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let name = String::from_utf8_lossy(name);
    let Ok(checked) = check_csr(&name, pem) else {
        return;
    };
    assert_eq!(
        checked.name(),
        name,
        "a request passes for its own name only"
    );
    assert_eq!(checked.fingerprint().len(), 64, "a sha256 hex fingerprint");
    let again =
        check_csr(&name, checked.pem().as_bytes()).expect("the re-encoded request passes again");
    assert_eq!(again.fingerprint(), checked.fingerprint());
});
