//! The server's configuration: defaults, overrides and what is refused.

use super::*;

#[test]
fn unknown_key_is_named() {
    let err = toml::from_str::<FileConfig>("repo = \"/r\"\nlistne = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("listne"), "{err}");
}

#[test]
fn overrides_win_and_defaults_fill_in() {
    let file = FileConfig {
        repo: Some("/file".into()),
        listen: Some("0.0.0.0:1".into()),
        ..FileConfig::default()
    };
    let over = Overrides {
        repo: Some("/cli".into()),
        data_dir: Some("/d".into()),
        ..Overrides::default()
    };
    let c = Config::merge(file, over).unwrap();
    assert_eq!(c.repo, "/cli");
    assert_eq!(c.listen.to_string(), "0.0.0.0:1");
    assert_eq!(c.database_url, "sqlite:///d/drover.db");
    assert_eq!(c.refresh_interval, Duration::from_secs(60));
    assert_eq!(c.unresponsive_after, Duration::from_secs(5400));
    assert_eq!(c.report_retention, Duration::from_secs(14 * 24 * 3600));
}

#[test]
fn a_database_url_other_than_sqlite_or_postgres_is_refused_without_its_password() {
    let with = |url: &str| {
        let over = Overrides {
            repo: Some("/r".into()),
            data_dir: Some("/d".into()),
            database: Some(url.into()),
            ..Overrides::default()
        };
        Config::merge(FileConfig::default(), over)
    };
    let err = with("mysql://drover:s3cret@db.example/drover").unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("`mysql://` URL") && err.contains("SQLite or PostgreSQL"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    for url in [
        "sqlite:///d/x.db",
        "/var/lib/drover/drover.db",
        "postgres://drover@db.example/drover",
        "postgresql://drover@/drover?host=/run/postgresql",
    ] {
        with(url).unwrap();
    }
}

#[test]
fn anonymous_limits_and_the_body_deadline_are_checked() {
    let merge = |toml: &str| {
        let file: FileConfig = toml::from_str(toml).unwrap();
        let over = Overrides {
            repo: Some("/r".into()),
            ..Overrides::default()
        };
        Config::merge(file, over)
    };
    let c = merge("max_connections = 100\nmax_anonymous_connections = 10\nmax_anonymous_per_address = 3\nbody_deadline_secs = 30\n").unwrap();
    assert_eq!(
        (
            c.max_anonymous_connections,
            c.max_anonymous_per_address,
            c.body_deadline
        ),
        (Some(10), 3, Duration::from_secs(30))
    );
    let c = merge("").unwrap();
    assert_eq!(
        (c.max_anonymous_connections, c.max_anonymous_per_address),
        (None, 64)
    );
    assert_eq!(c.body_deadline, Duration::from_secs(120));
    for (toml, key) in [
        (
            "max_anonymous_connections = 0",
            "max_anonymous_connections must be at least 1",
        ),
        (
            "max_anonymous_per_address = 0",
            "max_anonymous_per_address must be at least 1",
        ),
        (
            "body_deadline_secs = 0",
            "body_deadline_secs must be at least 1",
        ),
        (
            "max_connections = 10\nmax_anonymous_connections = 11",
            "max_anonymous_connections = 11 is more than max_connections = 10",
        ),
    ] {
        let err = merge(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
}

#[test]
fn zero_retention_and_zero_unresponsive_are_refused() {
    let repo = || Overrides {
        repo: Some("/r".into()),
        ..Overrides::default()
    };
    let file = FileConfig {
        report_retention_days: Some(0),
        ..FileConfig::default()
    };
    let err = Config::merge(file, repo()).unwrap_err();
    assert!(err.to_string().contains("report_retention_days"), "{err}");
    let file = FileConfig {
        unresponsive_after_secs: Some(0),
        ..FileConfig::default()
    };
    let err = Config::merge(file, repo()).unwrap_err();
    assert!(err.to_string().contains("unresponsive_after_secs"), "{err}");
    let file = FileConfig {
        max_concurrent_compiles: Some(0),
        ..FileConfig::default()
    };
    let err = Config::merge(file, repo()).unwrap_err();
    assert!(err.to_string().contains("max_concurrent_compiles"), "{err}");
    let file = FileConfig {
        max_connections: Some(0),
        ..FileConfig::default()
    };
    let err = Config::merge(file, repo()).unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
}

#[test]
fn sessions_last_12_hours_unless_configured_and_never_zero() {
    let repo = || Overrides {
        repo: Some("/r".into()),
        ..Overrides::default()
    };
    let c = Config::merge(FileConfig::default(), repo()).unwrap();
    assert_eq!(c.session_lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(c.hook_secret_file, None);
    let file: FileConfig =
        toml::from_str("session_lifetime_secs = 600\nhook_secret_file = \"/etc/drover/hook\"\n")
            .unwrap();
    let c = Config::merge(file, repo()).unwrap();
    assert_eq!(c.session_lifetime, Duration::from_secs(600));
    assert_eq!(
        c.hook_secret_file.as_deref(),
        Some(Path::new("/etc/drover/hook"))
    );
    let file = FileConfig {
        session_lifetime_secs: Some(0),
        ..FileConfig::default()
    };
    let err = Config::merge(file, repo()).unwrap_err();
    assert!(err.to_string().contains("session_lifetime_secs"), "{err}");
}

#[test]
fn insecure_http_is_refused_off_loopback() {
    let over = |listen: &str| Overrides {
        repo: Some("/r".into()),
        listen: Some(listen.into()),
        insecure_http: true,
        ..Overrides::default()
    };
    let err = Config::merge(FileConfig::default(), over("0.0.0.0:8140")).unwrap_err();
    assert!(err.to_string().contains("only on a loopback"), "{err}");
    let ok = Config::merge(FileConfig::default(), over("127.0.0.1:8140")).unwrap();
    assert!(ok.insecure_http);
    let ok = Config::merge(FileConfig::default(), over("[::1]:8140")).unwrap();
    assert!(ok.insecure_http);
}

#[test]
fn missing_repo_is_an_error_with_a_hint() {
    let err = Config::merge(FileConfig::default(), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("hint: pass --repo"), "{err}");
}
