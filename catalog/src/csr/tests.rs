//! Every refusal of `check_csr`, each with a real request made by rcgen.

use super::*;
use rcgen::{
    Attribute, BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SignatureAlgorithm,
};

fn key(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).unwrap()
}

fn p256() -> KeyPair {
    key(&rcgen::PKCS_ECDSA_P256_SHA256)
}

/// Subject CN = `cn`, subjectAltName dNSName `cn`, then `edit`.
fn params(cn: &str, edit: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = vec![SanType::DnsName(cn.try_into().unwrap())];
    edit(&mut params);
    params
}

fn csr_pem(key: &KeyPair, params: &CertificateParams) -> String {
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn plain(cn: &str) -> String {
    csr_pem(&p256(), &params(cn, |_| {}))
}

#[track_caller]
fn refused(name: &str, pem: &[u8], why: &str) {
    match check_csr(name, pem) {
        Ok(_) => panic!("accepted; expected a refusal containing {why:?}"),
        Err(e) => assert!(e.to_string().contains(why), "{e} (expected {why:?})"),
    }
}

#[test]
fn p256_and_ed25519_requests_pass_with_their_key_fingerprint() {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let key = key(alg);
        let pem = csr_pem(&key, &params("web-1.example.org", |_| {}));
        let checked = check_csr("web-1.example.org", pem.as_bytes()).unwrap();
        assert_eq!(checked.name(), "web-1.example.org");
        assert_eq!(checked.spki_der(), key.subject_public_key_info());
        assert_eq!(
            checked.fingerprint(),
            sha256_hex(&key.subject_public_key_info())
        );
        assert_eq!(rcgen::PublicKeyData::der_bytes(&checked), key.der_bytes());
        // The re-encoded PEM is the same request.
        assert_eq!(
            check_csr("web-1.example.org", checked.pem().as_bytes()).unwrap(),
            checked
        );
    }
}

#[test]
fn a_request_without_subject_alt_name_passes() {
    let pem = csr_pem(&p256(), &params("web1", |p| p.subject_alt_names.clear()));
    assert!(check_csr("web1", pem.as_bytes()).is_ok());
}

#[test]
fn names_that_are_not_plain_host_names_are_refused() {
    let long = format!("{}.{}", "a".repeat(200), "b".repeat(60));
    for name in [
        "",
        "../etc",
        "web1/x",
        "web\\1",
        "web\u{0}1",
        "web\n1",
        "web 1",
        &long,
    ] {
        let pem = csr_pem(
            &p256(),
            &params("web1", |p| {
                p.subject_alt_names.clear();
                p.distinguished_name = DistinguishedName::new();
                p.distinguished_name.push(DnType::CommonName, name);
            }),
        );
        refused(name, pem.as_bytes(), "invalid node name");
    }
}

#[test]
fn the_subject_must_name_the_node_exactly_once() {
    refused("web1", plain("web2").as_bytes(), "subject CN is \"web2\"");
    refused("web1", plain("WEB1").as_bytes(), "subject CN is \"WEB1\"");
    let none = csr_pem(
        &p256(),
        &params("web1", |p| {
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::OrganizationName, "web1");
        }),
    );
    refused("web1", none.as_bytes(), "exactly one CN");
}

#[test]
fn ca_rights_and_extra_uses_are_refused() {
    type Edit = Box<dyn Fn(&mut CertificateParams)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            "asks for basicConstraints (CA rights)",
        ),
        (
            Box::new(|p| p.is_ca = IsCa::ExplicitNoCa),
            "asks for basicConstraints",
        ),
        (
            Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign]),
            "asks for keyUsage",
        ),
        (
            Box::new(|p| p.key_usages = vec![KeyUsagePurpose::DigitalSignature]),
            "asks for keyUsage",
        ),
        (
            Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
            "asks for extendedKeyUsage",
        ),
        (
            Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]),
            "asks for extendedKeyUsage",
        ),
        (
            Box::new(|p| {
                p.custom_extensions = vec![CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 55555, 1],
                    vec![5, 0],
                )]
            }),
            "asks for extension 1.3.6.1.4.1.55555.1",
        ),
        (
            Box::new(|p| {
                p.subject_alt_names
                    .push(SanType::DnsName("web2".try_into().unwrap()))
            }),
            "asks for subjectAltName",
        ),
        (
            Box::new(|p| {
                p.subject_alt_names = vec![SanType::IpAddress("10.0.0.1".parse().unwrap())]
            }),
            "asks for subjectAltName",
        ),
        (
            Box::new(|p| p.subject_alt_names = vec![SanType::DnsName("web2".try_into().unwrap())]),
            "only dNSName \"web1\"",
        ),
    ];
    for (edit, why) in cases {
        let pem = csr_pem(&p256(), &params("web1", edit));
        refused("web1", pem.as_bytes(), why);
        refused(
            "web1",
            pem.as_bytes(),
            "the server decides every extension itself",
        );
    }
}

#[test]
fn attributes_other_than_the_extension_request_are_refused() {
    let key = p256();
    let challenge = Attribute {
        oid: &[1, 2, 840, 113549, 1, 9, 7],
        values: vec![0x31, 0x03, 0x0c, 0x01, b'x'],
    };
    let pem = params("web1", |_| {})
        .serialize_request_with_attributes(&key, vec![challenge])
        .unwrap()
        .pem()
        .unwrap();
    refused("web1", pem.as_bytes(), "challengePassword");
    let unknown = Attribute {
        oid: &[1, 3, 6, 1, 4, 1, 55555, 2],
        values: vec![0x31, 0x02, 0x05, 0x00],
    };
    let pem = params("web1", |_| {})
        .serialize_request_with_attributes(&key, vec![unknown])
        .unwrap()
        .pem()
        .unwrap();
    refused(
        "web1",
        pem.as_bytes(),
        "carries attribute 1.3.6.1.4.1.55555.2",
    );
}

fn der_of(pem: &str) -> Vec<u8> {
    <(SectionKind, Vec<u8>)>::from_pem_slice(pem.as_bytes())
        .unwrap()
        .1
}

#[test]
fn a_bad_signature_is_refused() {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let mut der = der_of(&csr_pem(&key(alg), &params("web1", |_| {})));
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let pem = pem_encode("CERTIFICATE REQUEST", &der);
        refused("web1", pem.as_bytes(), "signature does not verify");
    }
}

#[test]
fn a_request_signed_by_another_key_is_refused() {
    // The body of one request with the signature of another key's request.
    let a = der_of(&plain("web1"));
    let b = der_of(&plain("web1"));
    let (_, ra) = X509CertificationRequest::from_der(&a).unwrap();
    let (_, rb) = X509CertificationRequest::from_der(&b).unwrap();
    let info_a = ra.certification_request_info.raw;
    let info_b = rb.certification_request_info.raw;
    let info_b_end = info_b.as_ptr() as usize - b.as_ptr() as usize + info_b.len();
    let tail_b = &b[info_b_end..];
    let mut spliced = Vec::new();
    let content_len = info_a.len() + tail_b.len();
    spliced.push(0x30);
    if content_len < 256 {
        spliced.extend([0x81, content_len as u8]);
    } else {
        spliced.extend([0x82, (content_len >> 8) as u8, content_len as u8]);
    }
    spliced.extend_from_slice(info_a);
    spliced.extend_from_slice(tail_b);
    let pem = pem_encode("CERTIFICATE REQUEST", &spliced);
    refused("web1", pem.as_bytes(), "signature does not verify");
}

#[test]
fn keys_other_than_p256_and_ed25519_are_refused() {
    let pem = csr_pem(
        &key(&rcgen::PKCS_ECDSA_P384_SHA384),
        &params("web1", |_| {}),
    );
    refused("web1", pem.as_bytes(), "not on curve P-256");
}

#[test]
fn bodies_that_are_not_one_csr_block_are_refused() {
    refused("web1", &vec![b'a'; MAX_CSR_PEM + 1], "at most 16384");
    refused("web1", b"", "no PEM block");
    refused("web1", b"hello", "no PEM block");
    let one = plain("web1");
    refused(
        "web1",
        format!("{one}{one}").as_bytes(),
        "more than one PEM block",
    );
    let cert = pem_encode("CERTIFICATE", &der_of(&one));
    refused("web1", cert.as_bytes(), "Certificate block");
    let junk = pem_encode("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00");
    refused("web1", junk.as_bytes(), "cannot be parsed");
    let mut trailing = der_of(&one);
    trailing.push(0);
    let trailing = pem_encode("CERTIFICATE REQUEST", &trailing);
    refused("web1", trailing.as_bytes(), "1 bytes follow the request");
}

#[test]
fn truncated_and_corrupted_requests_are_refused_without_panicking() {
    let der = der_of(&plain("web1"));
    for len in 0..der.len() {
        let pem = pem_encode("CERTIFICATE REQUEST", &der[..len]);
        assert!(
            check_csr("web1", pem.as_bytes()).is_err(),
            "truncated at {len}"
        );
    }
    for at in 0..der.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = der.clone();
            bad[at] ^= flip;
            let pem = pem_encode("CERTIFICATE REQUEST", &bad);
            // Any outcome but a panic; a flip that still verifies must keep the name.
            if let Ok(checked) = check_csr("web1", pem.as_bytes()) {
                assert_eq!(checked.name(), "web1");
            }
        }
    }
}
