//! The Docker Engine API, blocking: bollard's async client driven by a
//! current-thread tokio runtime that lives as long as the run. Every call
//! names the container or image it was about in its error.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bollard::Docker as Client;
use bollard::errors::Error as ApiError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ImportImageOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions,
};
use futures_lite::StreamExt as _;
use tokio::runtime::Runtime;

/// An ordinary API call; pulls and loads get [`TRANSFER_TIMEOUT`].
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Lines of a container's log shown under a failure.
const LOG_TAIL: &str = "20";

/// The engine connection of one run, opened by the first container resource.
/// The default has no node to label containers with: it refuses to connect.
#[derive(Default)]
pub(crate) struct Containers {
    /// The engine's socket and the node, once the engine configured them.
    target: Option<(PathBuf, String)>,
    docker: Option<Docker>,
    /// Where the replicas' probe verdicts are kept (`verdicts.rs`).
    probe_state: Option<PathBuf>,
}

impl fmt::Debug for Containers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Containers")
            .field("target", &self.target)
            .field("connected", &self.docker.is_some())
            .finish()
    }
}

impl Containers {
    pub(crate) fn new(socket: &Path, node: &str) -> Containers {
        Containers {
            target: Some((socket.to_owned(), node.to_owned())),
            docker: None,
            probe_state: None,
        }
    }

    /// Keeps the replicas' probe verdicts in `path` (`None`: keeps none).
    pub(crate) fn keep_probes_in(&mut self, path: Option<PathBuf>) {
        self.probe_state = path;
    }

    pub(super) fn probe_state(&self) -> Option<&Path> {
        self.probe_state.as_deref()
    }

    /// The engine, and the node name its containers are labelled with.
    pub(super) fn connect(&mut self) -> Result<(&Docker, &str)> {
        let Some((socket, node)) = &self.target else {
            bail!("no container engine is configured for this run");
        };
        let docker = match &mut self.docker {
            Some(docker) => docker,
            slot @ None => slot.insert(Docker::connect(socket)?),
        };
        Ok((docker, node))
    }

    /// The engine when one may be there: already connected, or its socket
    /// exists. `None`, without trying, when there is no socket to reach.
    pub(super) fn connect_if_present(&mut self) -> Option<Result<(&Docker, &str)>> {
        let (socket, _) = self.target.as_ref()?;
        if self.docker.is_none() && !socket.exists() {
            return None;
        }
        Some(self.connect())
    }
}

/// A container as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Listed {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
}

pub(super) struct Docker {
    client: Client,
    runtime: Runtime,
    socket: PathBuf,
}

impl Docker {
    fn connect(socket: &Path) -> Result<Docker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime for the Docker API client")?;
        let unreachable = |e: ApiError| {
            anyhow!(
                "cannot reach the Docker Engine at {}: {e}\nhint: is dockerd (or podman's compatible service) running? The socket is set by `container_socket` in the agent's config",
                socket.display()
            )
        };
        let path = socket.to_string_lossy();
        let client =
            Client::connect_with_unix(&path, CALL_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
                .map_err(unreachable)?;
        // Speak the engine's API version when it is older than bollard's.
        let client = runtime
            .block_on(client.negotiate_version())
            .map_err(unreachable)?;
        Ok(Docker {
            client,
            runtime,
            socket: socket.to_owned(),
        })
    }

    /// The container by name; `None` when there is none.
    pub(super) fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>> {
        let found = self
            .runtime
            .block_on(self.client.inspect_container(name, None));
        not_found_is_none(found).with_context(|| format!("cannot inspect container {name}"))
    }

    /// Every container, running or not, that has each of `labels` (`KEY`
    /// or `KEY=VALUE`): one call, filtered by the engine.
    pub(super) fn list_labelled(&self, labels: &[String]) -> Result<Vec<Listed>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
            ..Default::default()
        };
        let listed = self
            .runtime
            .block_on(self.client.list_containers(Some(options)))
            .map_err(|e| {
                anyhow!(
                    "cannot list the containers labelled {}: {}",
                    labels.join(", "),
                    api_message(&e)
                )
            })?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                // The engine names a container `/NAME`.
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                Some(Listed {
                    name,
                    labels: c.labels.unwrap_or_default(),
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }

    /// The local image's id (`sha256:...`); `None` when it is not on this node.
    pub(super) fn image_id(&self, reference: &str) -> Result<Option<String>> {
        let found = self.runtime.block_on(self.client.inspect_image(reference));
        let image = not_found_is_none(found)
            .with_context(|| format!("cannot inspect image {reference}"))?;
        Ok(image.and_then(|i| i.id))
    }

    pub(super) fn pull(&self, reference: &str) -> Result<()> {
        let (from_image, tag) = split_tag(reference);
        let options = CreateImageOptions {
            from_image: Some(from_image.to_owned()),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        let client = self.client.clone().with_timeout(TRANSFER_TIMEOUT);
        self.runtime
            .block_on(async {
                let mut progress = client.create_image(Some(options), None, None);
                while let Some(step) = progress.next().await {
                    step?;
                }
                Ok::<_, ApiError>(())
            })
            .map_err(|e| {
                anyhow!(
                    "image {reference} is not on this node and pulling it failed: {}\nhint: make the registry reachable, or ship the image with `image_archive` (a `docker save` tarball managed by a file resource)",
                    api_message(&e)
                )
            })
    }

    /// `docker load` of a `docker save` tarball, streamed from disk.
    pub(super) fn load(&self, archive: &Path) -> Result<()> {
        let file = fs_err::File::open(archive)?;
        let chunks = futures_lite::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0; 256 * 1024];
            match file.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let client = self.client.clone().with_timeout(TRANSFER_TIMEOUT);
        self.runtime
            .block_on(async {
                let options = ImportImageOptions {
                    quiet: true,
                    ..Default::default()
                };
                let mut progress = client.import_image_stream(options, chunks, None);
                while let Some(step) = progress.next().await {
                    step?;
                }
                Ok::<_, ApiError>(())
            })
            .map_err(|e| {
                anyhow!(
                    "cannot load the image archive {}: {}",
                    archive.display(),
                    api_message(&e)
                )
            })
    }

    /// Creates the container; returns its id.
    pub(super) fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let created = self
            .runtime
            .block_on(self.client.create_container(Some(options), body))
            .map_err(|e| anyhow!("cannot create container {name}: {}", api_message(&e)))?;
        Ok(created.id)
    }

    pub(super) fn start(&self, name: &str) -> Result<()> {
        self.runtime
            .block_on(self.client.start_container(name, None))
            .map_err(|e| {
                let message = api_message(&e);
                let port_taken = message.contains("address already in use")
                    || message.contains("port is already allocated");
                let hint = match port_taken {
                    true => "\nhint: something else holds that host port (`ss -ltnp` names the process, `docker ps` the container)",
                    false => "",
                };
                anyhow!("cannot start container {name}: {message}{hint}")
            })
    }

    /// Stops the container, giving it its own `stop_timeout` after SIGTERM.
    pub(super) fn stop(&self, name: &str) -> Result<()> {
        match self
            .runtime
            .block_on(self.client.stop_container(name, None))
        {
            // 304: it was not running.
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => bail!("cannot stop container {name}: {}", api_message(&e)),
        }
    }

    pub(super) fn restart(&self, name: &str) -> Result<()> {
        self.runtime
            .block_on(self.client.restart_container(name, None))
            .map_err(|e| anyhow!("cannot restart container {name}: {}", api_message(&e)))
    }

    /// Stops and removes the container (its anonymous volumes too; named
    /// volumes and bind mounts stay).
    pub(super) fn remove(&self, name: &str) -> Result<()> {
        self.stop(name)?;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.runtime
            .block_on(self.client.remove_container(name, Some(options)))
            .map_err(|e| anyhow!("cannot remove container {name}: {}", api_message(&e)))
    }

    /// The last lines the container wrote, for an error message.
    pub(super) fn log_tail(&self, name: &str) -> String {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: LOG_TAIL.to_owned(),
            ..Default::default()
        };
        let lines = self.runtime.block_on(async {
            let mut out = String::new();
            let mut logs = self.client.logs(name, Some(options));
            while let Some(Ok(chunk)) = logs.next().await {
                out.push_str(&chunk.to_string());
            }
            out
        });
        lines.trim_end().to_owned()
    }

    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }
}

/// `repo:tag` -> (`repo`, Some(`tag`)); no tag -> `latest` (pulling a
/// repository without a tag would pull every tag); a digest stays whole.
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            Some(&reference[name_start + i + 1..]),
        ),
        None => (reference, Some("latest")),
    }
}

fn not_found_is_none<T>(result: Result<T, ApiError>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(ApiError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(anyhow!(api_message(&e))),
    }
}

/// The engine's own words when it gave any, else the transport error.
fn api_message(error: &ApiError) -> String {
    match error {
        ApiError::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        ApiError::DockerStreamError { error } => error.trim().to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(split_tag("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_tag("registry.local:5000/team/web"),
            ("registry.local:5000/team/web", Some("latest"))
        );
        assert_eq!(
            split_tag("registry.local:5000/team/web:2"),
            ("registry.local:5000/team/web", Some("2"))
        );
        let digest = "busybox@sha256:0123";
        assert_eq!(split_tag(digest), (digest, None));
    }
}
