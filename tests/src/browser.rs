//! A real headless browser for the dashboard tests: Debian's `chromium`
//! driven through `chromedriver` over WebDriver, with a fresh profile per
//! test, the server's own key pinned, and screenshots kept as artifacts in
//! `target/dashboard-screenshots/`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::Server;

/// How long a page may take to show an element the test looks for.
pub const WAIT: Duration = Duration::from_secs(10);

const INSTALL_HINT: &str =
    "hint: `apt-get install chromium chromium-driver` (scripts/test installs them when missing)";

/// A Chromium session on its own chromedriver; both are killed when dropped.
pub struct Browser {
    client: Client,
    base: String,
    shots: Screenshots,
    // Declared last: dropped after the session, so the driver outlives its client.
    driver: Driver,
}

impl Browser {
    /// A headless Chromium that trusts `server`'s certificate (by its public
    /// key) and nothing else it does not already trust. `test` names the
    /// screenshots.
    pub async fn open(server: &Server, test: &str) -> Browser {
        let chromium = find_program("chromium");
        let driver = Driver::start(&find_program("chromedriver"));
        let profile = driver.profile.path().display().to_string();
        let pin = spki_pin(&server.data_dir().join("ca/server.crt.pem"));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            &format!("--user-data-dir={profile}"),
            // The server's CA is its own, in no trust store: accept exactly
            // its key rather than ignoring every certificate error.
            &format!("--ignore-certificate-errors-spki-list={pin}"),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start chromium ({}): {e}\n{}",
                    chromium.display(),
                    driver.log_tail()
                )
            });
        Browser {
            client,
            base: server.url.clone(),
            shots: Screenshots::new(test),
            driver,
        }
    }

    /// Loads `path` of the server and waits for the page to load.
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
        // A certificate the browser refused shows an interstitial, not an error.
        let title = self.client.title().await.unwrap_or_default();
        assert!(
            !title.contains("Privacy error"),
            "chromium refused the server's certificate at {url}"
        );
    }

    /// Loads a page of another site (`url` whole), as a link from
    /// elsewhere would.
    pub async fn goto_elsewhere(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
    }

    /// The path (and query) of the page now shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for it.
    pub async fn find(&self, css: &str) -> Element {
        self.find_within(css, WAIT).await
    }

    /// The first element matching `css`, waiting up to `timeout`; panics
    /// with the page's address and text when it does not come.
    pub async fn find_within(&self, css: &str, timeout: Duration) -> Element {
        match self
            .client
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no `{css}` within {timeout:?} ({e}) on {}\n--- page text\n{}",
                self.path().await,
                self.page_text().await
            ),
        }
    }

    /// Every element matching `css` now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find_all `{css}`: {e}"))
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of `{css}`: {e}"))
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Clicks the link or button matching `css` that loads a page, and
    /// waits until that page has replaced this one: what is looked up next
    /// is never found on the page being left (which may have it too).
    pub async fn follow(&self, css: &str) {
        self.js("window.droverLeaving = true; return null").await;
        self.click(css).await;
        let arrived = "return window.droverLeaving !== true && document.readyState === 'complete'";
        let deadline = Instant::now() + WAIT;
        // While the new page loads, a script may find no page to run in.
        while !matches!(
            self.client.execute(arrived, Vec::new()).await,
            Ok(Value::Bool(true))
        ) {
            if Instant::now() > deadline {
                panic!(
                    "`{css}` loaded no page within {WAIT:?}; still on {}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page (a function body: `return` gives the value).
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script `{script}`: {e}"))
    }

    /// The whole page as a person reads it (for failure messages).
    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(e) => format!("(no body: {e})"),
        }
    }

    /// Saves a PNG of the window as the next step of this test and returns its path.
    pub async fn screenshot(&mut self, step: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot `{step}`: {e}"));
        self.shots.save(step, &png)
    }

    /// Ends the session (chromium quits); chromedriver is stopped on drop.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        if let Err(e) = client.close().await {
            eprintln!(
                "warning: closing the browser session: {e}\n{}",
                driver.log_tail()
            );
        }
    }
}

/// `chromedriver --port=N` on a free loopback port, in a process group of
/// its own so that dropping it takes the browser it started along.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
    /// The browser's user data dir and the driver's log, removed after both exit.
    profile: TempDir,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        // Two tries: the port is free when picked, but another process may take it first.
        let mut last_log = String::new();
        for _ in 0..2 {
            let profile = tempfile::Builder::new()
                .prefix("drover-chromium-")
                .tempdir()
                .expect("a temporary browser profile");
            let log = profile.path().join("chromedriver.log");
            let port = free_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {}: {e}\n{INSTALL_HINT}", program.display())
                });
            let mut driver = Driver {
                child,
                port,
                log,
                profile,
            };
            if driver.wait_ready(Duration::from_secs(20)) {
                return driver;
            }
            last_log = driver.log_tail();
        }
        panic!(
            "{} did not answer on a loopback port\n{last_log}",
            program.display()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `GET /status` until the driver says it is ready, or it exits.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if driver_ready(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The end of the driver's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = fs_err::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- end of {}\n{tail}", self.log.display())
    }

    /// Kills the driver's process group (the driver and the browser it
    /// started) and reaps the driver.
    fn kill(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Numbered PNGs of one test in `target/dashboard-screenshots/`.
struct Screenshots {
    dir: PathBuf,
    test: String,
    taken: usize,
}

impl Screenshots {
    fn new(test: &str) -> Screenshots {
        let dir = target_dir().join("dashboard-screenshots");
        fs_err::create_dir_all(&dir).expect("the screenshot directory");
        Screenshots {
            dir,
            test: test.to_owned(),
            taken: 0,
        }
    }

    fn save(&mut self, step: &str, png: &[u8]) -> PathBuf {
        self.taken += 1;
        let path = self
            .dir
            .join(format!("{}-{:02}-{step}.png", self.test, self.taken));
        fs_err::write(&path, png).expect("the screenshot is saved");
        println!("screenshot: {}", path.display());
        path
    }
}

/// The workspace's target directory (the test executable is in `target/debug/deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("target/debug/deps/EXE has a target dir")
        .to_owned()
}

/// `name` on `PATH`, or a panic that says how to install it.
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed (not on PATH)\n{INSTALL_HINT}"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

/// Whether the driver answers `GET /status` with `"ready": true`.
fn driver_ready(port: u16) -> bool {
    status_body(port).is_some_and(|body| {
        body.replace(char::is_whitespace, "")
            .contains("\"ready\":true")
    })
}

/// The body of `GET /status`, read up to its `Content-Length` (chromedriver
/// keeps the connection open whatever the request says).
fn status_body(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // chromedriver refuses HTTP/1.0.
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                return Some(body.to_owned());
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// base64 of the sha256 of a certificate's SubjectPublicKeyInfo: what
/// Chromium's `--ignore-certificate-errors-spki-list` takes.
fn spki_pin(cert: &Path) -> String {
    let pem = fs_err::read(cert).expect("the server's certificate");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .unwrap_or_else(|e| panic!("{} is not a PEM certificate: {e}", cert.display()));
    let parsed = pem
        .parse_x509()
        .unwrap_or_else(|e| panic!("{} is not a certificate: {e}", cert.display()));
    let spki = parsed.tbs_certificate.subject_pki.raw;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki))
}
