//! The dashboard as an operator sees it: a real headless Chromium signs in
//! to a real server that holds reports from several nodes, and reads it.

mod apps;
mod certificates;
mod impact;
mod markup;
mod runs;
mod walkthrough;

use std::path::PathBuf;

use drover_tests::{Agent, Credential, GitRepo, Server};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Nodes whose last report is older than this many seconds are `unresponsive`.
pub const UNRESPONSIVE_AFTER_SECS: i64 = 3600;

/// The forge's page of a commit, as the server is configured.
pub const COMMIT_URL: &str = "https://git.example.com/ops/site/commit/{commit}";

/// The failing exec every `db-*` node gets, and what it prints before failing.
pub const FAILING_EXEC: &str = "exec:migrate";

/// A repo where every node manages `NODE/app.conf` and `db-*` nodes also
/// run an exec that fails, and a server on it.
pub struct Fleet {
    pub tmp: TempDir,
    pub repo: GitRepo,
    pub commit: String,
    pub server: Server,
}

impl Fleet {
    pub fn start() -> Fleet {
        Fleet::start_with(&[])
    }

    /// [`Fleet::start`] with `files` (path, text) added to the repo's
    /// first commit.
    pub fn start_with(files: &[(&str, &str)]) -> Fleet {
        let tmp = tempfile::Builder::new()
            .prefix("drover-dashboard-")
            .tempdir()
            .unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        let root = tmp.path().join("managed");
        fs_err::create_dir_all(&root).unwrap();
        repo.write(
            "nodes.toml",
            "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n\n\
             [[node]]\nmatch = \"db-*\"\nroles = [\"db\"]\n",
        )
        .write(
            "roles/base.toml",
            &format!(
                "[[directory]]\npath = \"{root}/{{{{ node }}}}\"\n\n\
                 [[file]]\npath = \"{root}/{{{{ node }}}}/app.conf\"\n\
                 content = \"listen = 8080\\nnode = {{{{ node }}}}\\n\"\n",
                root = root.display()
            ),
        )
        .write(
            "roles/db.toml",
            "[[exec]]\nname = \"migrate\"\n\
             command = [\"sh\", \"-c\", \"echo boom >&2; exit 3\"]\n",
        );
        for (path, text) in files {
            repo.write(path, text);
        }
        let commit = repo.commit("a fleet whose db nodes fail");
        let server = Server::start_with(
            &repo.path,
            &tmp.path().join("server"),
            "127.0.0.1:0",
            &format!(
                "unresponsive_after_secs = {UNRESPONSIVE_AFTER_SECS}\ncommit_url = \"{COMMIT_URL}\"\n"
            ),
            &[],
        );
        Fleet {
            tmp,
            repo,
            commit,
            server,
        }
    }

    /// An agent for `node`, with its own state dir.
    pub fn agent(&self, node: &str) -> Agent {
        Agent::new(
            node,
            &self.server,
            &self.tmp.path().join(format!("agent-{node}")),
        )
    }

    /// The file `NODE/NAME` of the managed tree.
    pub fn managed(&self, node: &str, name: &str) -> PathBuf {
        self.tmp.path().join("managed").join(node).join(name)
    }

    /// Sends a certificate request for `node` with a new key, as an agent
    /// would, with `credential` (the enrollment token, or none); the key,
    /// and the answer's status and body.
    pub fn request_certificate(
        &self,
        node: &str,
        credential: &Credential,
    ) -> (rcgen::KeyPair, u16, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![node.to_owned()]).unwrap();
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::CommonName, node);
        params.distinguished_name = subject;
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let (status, body) = self
            .server
            .request_as(
                credential,
                "POST",
                &format!("/api/v1/certificate_requests/{node}"),
                Some(csr.as_bytes()),
            )
            .unwrap();
        (key, status, body)
    }

    /// Enrolls `node` with a key and CSR of its own, as an agent would,
    /// without running one (so the node has no report yet).
    pub fn enroll(&self, node: &str) -> Credential {
        let token = fs_err::read_to_string(self.server.enrollment_token_file()).unwrap();
        let credential = Credential::Token(token.trim().to_owned());
        let (key, status, body) = self.request_certificate(node, &credential);
        assert_eq!(status, 200, "enrolling {node}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let dir = self.tmp.path().join(format!("identity-{node}"));
        fs_err::create_dir_all(&dir).unwrap();
        let (cert, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        let pem = answer["certificate"]
            .as_str()
            .expect("a signed certificate");
        fs_err::write(&cert, pem).unwrap();
        fs_err::write(&key_file, key.serialize_pem()).unwrap();
        Credential::Cert {
            cert,
            key: key_file,
        }
    }

    /// As `node`: asks for its catalog with `facts`, as an agent does
    /// before a run (the node is then seen, and ready to the scheduler).
    pub fn ask_for_catalog(&self, node: &str, credential: &Credential, facts: &Value) -> Value {
        let request = json!({ "facts": facts }).to_string();
        let (status, body) = self
            .server
            .request_as(
                credential,
                "POST",
                &format!("/api/v1/nodes/{node}/catalog"),
                Some(request.as_bytes()),
            )
            .unwrap();
        assert_eq!(status, 200, "{node}'s catalog: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// As `node`: asks for its catalog, as an agent does before a run, and
    /// posts the report of a run of it that finished `age_secs` ago with
    /// nothing to change.
    pub fn post_old_report(&self, node: &str, credential: &Credential, age_secs: i64) {
        let catalog = self.ask_for_catalog(node, credential, &json!({}));
        let resources: Vec<Value> = catalog["resources"]
            .as_array()
            .expect("catalog resources")
            .iter()
            .map(|r| json!({"id": r["id"], "status": "unchanged", "duration_ms": 1.5}))
            .collect();
        let finished = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age_secs);
        let started = finished - jiff::SignedDuration::from_secs(3);
        let report = json!({
            "run_id": format!("{node}-{}", finished.as_second()),
            "node": node,
            "environment": "main",
            "commit": self.commit,
            "catalog_version": catalog["version"],
            "noop": false,
            "started_at": started.to_string(),
            "finished_at": finished.to_string(),
            "status": "unchanged",
            "cached_catalog": "not_used",
            "agent_version": env!("CARGO_PKG_VERSION"),
            "resources": resources,
        });
        let (status, body) = self
            .server
            .request_as(
                credential,
                "POST",
                &format!("/api/v1/nodes/{node}/reports"),
                Some(report.to_string().as_bytes()),
            )
            .unwrap();
        assert!(
            (200..300).contains(&status),
            "posting {node}'s report: {status} {body}"
        );
    }
}

/// A multi-threaded runtime for the WebDriver client; the tests block on it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
