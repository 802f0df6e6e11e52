//! Good and bad values of each of Docker's container languages.

use super::*;

fn port(s: &str) -> PortMapping {
    PortMapping::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn port_mappings_parse_every_form() {
    let p = port("80");
    assert_eq!((p.host_ip, p.host_port, p.container_port), (None, None, 80));
    assert_eq!(p.protocol, Protocol::Tcp);
    assert_eq!(p.container_key(), "80/tcp");
    let p = port("8080:80");
    assert_eq!((p.host_ip, p.host_port), (None, Some(8080)));
    let p = port("127.0.0.1:8080:80/udp");
    assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(p.container_key(), "80/udp");
    let p = port("[::1]:8080:80/sctp");
    assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
    assert_eq!((p.host_port, p.container_port), (Some(8080), 80));
    assert_eq!(p.protocol.to_string(), "sctp");
    let p = port("[2001:db8::5]::53/udp");
    assert_eq!((p.host_port, p.container_port), (None, 53));
    let p = port("0.0.0.0::443");
    assert_eq!((p.host_port, p.container_port), (None, 443));
    assert_eq!(port("65535:1").host_port, Some(65535));
}

#[test]
fn bad_port_mappings_say_what_is_expected() {
    let err = PortMapping::parse("8o:80").unwrap_err();
    assert_eq!(
        err,
        "`8o:80` is not a port mapping: `8o` is not a port number; expected \
         [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp], e.g. 127.0.0.1:8080:80"
    );
    let cases = [
        ("80/http", "unknown protocol `http`"),
        ("0:80", "port 0 is out of range"),
        ("8080:65536", "port 65536 is out of range"),
        ("8000-8010:8000-8010", "port ranges"),
        ("::1:8080:80", "an IPv6 HOST_IP goes in brackets"),
        ("[127.0.0.1]:8080:80", "not an IPv6 address"),
        ("[::1]8080:80", "expected [HOST_IP:]"),
        ("localhost:8080:80", "`localhost` is not an IPv4 address"),
        ("", "`` is not a port number"),
        (":80", "`` is not a port number"),
        ("+80", "`+80` is not a port number"),
        ("80/TCP", "unknown protocol `TCP`"),
        ("1.2.3.4:5:6:7", "too many `:`"),
    ];
    for (bad, expected) in cases {
        let err = PortMapping::parse(bad).expect_err(bad);
        assert!(
            err.starts_with(&format!("`{bad}` is not a port mapping: ")),
            "{err}"
        );
        assert!(err.contains(expected), "{bad}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn mounts_are_bind_mounts_or_named_volumes() {
    let m = Mount::parse("/srv/app/data:/data:ro").unwrap();
    assert_eq!(m.source, MountSource::Bind(PathBuf::from("/srv/app/data")));
    assert_eq!((m.target.as_str(), m.read_only), ("/data", true));
    let m = Mount::parse("app-data:/var/lib/app").unwrap();
    assert_eq!(m.source, MountSource::Volume("app-data".into()));
    assert!(!m.read_only);
    assert!(!Mount::parse("cache.v2:/cache:rw").unwrap().read_only);
    assert_eq!(
        Mount::parse("/:/host:ro").unwrap().source,
        MountSource::Bind(PathBuf::from("/"))
    );
}

#[test]
fn bad_mounts_say_what_is_expected() {
    let cases = [
        ("/data", "expected SOURCE:TARGET[:ro|:rw]"),
        ("data:/data:rx", "unknown mode `rx`"),
        (
            "./data:/data",
            "neither an absolute host path nor a volume name",
        ),
        ("a:/data", "neither an absolute host path nor a volume name"),
        (":/data", "neither an absolute host path nor a volume name"),
        (
            "data:data",
            "TARGET `data` must be an absolute, normalised path",
        ),
        ("data:/data/", "it ends with a slash"),
        (
            "/srv/../etc:/etc",
            "host path `/srv/../etc` must be normalised",
        ),
        ("a:b:c:d", "expected SOURCE:TARGET"),
    ];
    for (bad, expected) in cases {
        let err = Mount::parse(bad).expect_err(bad);
        assert!(
            err.starts_with(&format!("`{bad}` is not a volume: ")),
            "{err}"
        );
        assert!(err.contains(expected), "{bad}: {err}");
    }
}

#[test]
fn restart_policies() {
    let ok = [
        ("no", RestartPolicy::No),
        ("always", RestartPolicy::Always),
        ("unless-stopped", RestartPolicy::UnlessStopped),
        ("on-failure", RestartPolicy::OnFailure { max_retries: None }),
        (
            "on-failure:5",
            RestartPolicy::OnFailure {
                max_retries: Some(5),
            },
        ),
    ];
    for (text, policy) in ok {
        assert_eq!(RestartPolicy::parse(text), Ok(policy));
        assert_eq!(text.split(':').next(), Some(policy.docker_name()));
    }
    assert_eq!(
        RestartPolicy::parse("on-failure:0"),
        Ok(RestartPolicy::OnFailure { max_retries: None }),
        "Docker reads 0 retries as no limit"
    );
    assert_eq!(
        RestartPolicy::parse("sometimes").unwrap_err(),
        "`sometimes` is not a restart policy: expected no, always, unless-stopped or \
         on-failure[:MAX_RETRIES], e.g. on-failure:3"
    );
    for (bad, expected) in [
        ("on-failure:x", "`x` is not a whole number"),
        ("on-failure:", "`` is not a whole number"),
        ("on-failure:-1", "`-1` is not a whole number"),
        ("on-failure:99999999999", "too many"),
        ("Always", "expected no, always"),
        ("always:3", "expected no, always"),
    ] {
        let err = RestartPolicy::parse(bad).expect_err(bad);
        assert!(err.contains(expected), "{bad}: {err}");
    }
}

#[test]
fn container_names_follow_docker() {
    for good in ["db", "web-1", "app_v1.2", "0cache", "A-Z"] {
        assert_eq!(validate_name(good), Ok(()), "{good}");
    }
    let long = "a".repeat(129);
    for bad in [
        "a", "", "-web", ".web", "_web", "/web", "web app", "wéb", "a/b", &long,
    ] {
        let err = validate_name(bad).expect_err(bad);
        assert!(err.contains("is not a valid container name"), "{err}");
    }
    assert_eq!(validate_name(&"a".repeat(128)), Ok(()));
}

#[test]
fn image_references_follow_docker_grammar() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let good = [
        "redis".to_owned(),
        "redis:7.2".into(),
        "drover-test/busybox:1".into(),
        "library/redis:7.2-alpine".into(),
        "registry.example.com/team/app:1.4".into(),
        "localhost:5000/app".into(),
        "localhost/app:latest".into(),
        "Registry.Example.com:443/a/b__c/d-e.f:V_1".into(),
        "[::1]:5000/app:1".into(),
        "a---b".into(),
        format!("redis@{digest}"),
        format!("redis:7@{digest}"),
    ];
    for image in &good {
        assert_eq!(validate_image(image), Ok(()), "{image}");
    }
    let cases = [
        ("", "it is empty"),
        ("redis 7", "whitespace"),
        ("Redis:7", "path component `Redis`"),
        ("team/App", "path component `App`"),
        ("Team/app", "path component `Team`"),
        ("redis:", "tag ``"),
        ("redis:-x", "tag `-x`"),
        ("redis@sha256:abc", "digest `sha256:abc`"),
        ("redis@md5:0123", "digest"),
        ("-redis", "path component `-redis`"),
        ("redis/", "path component ``"),
        ("a//b", "path component ``"),
        ("a..b", "path component `a..b`"),
        ("a___b", "path component `a___b`"),
        (":tag", "path component ``"),
        ("exa_mple.com/app", "registry `exa_mple.com`"),
        ("example.com:port/app", "registry `example.com:port`"),
    ];
    for (bad, expected) in cases {
        let err = validate_image(bad).expect_err(bad);
        assert!(
            err.starts_with(&format!("`{bad}` is not an image reference: ")),
            "{err}"
        );
        assert!(err.contains(expected), "{bad}: {err}");
    }
    let long = format!("{}:1", "a".repeat(256));
    assert!(
        validate_image(&long)
            .unwrap_err()
            .contains("longer than 255")
    );
}
