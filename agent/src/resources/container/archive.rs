//! `docker save` tarballs for air-gapped nodes: which image id an archive
//! holds for a reference, read from its `manifest.json` without loading it,
//! so a run loads the archive only when the node's image differs from it.

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    /// `<hex>.json` (Docker before 25) or `blobs/sha256/<hex>` (OCI layout).
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

/// The image id (`sha256:...`) the archive holds under `reference`.
pub(super) fn image_id(archive: &Path, reference: &str) -> Result<String> {
    let manifest = read_manifest(archive)?;
    let wanted = familiar(reference);
    let entry = manifest.iter().find(|entry| {
        entry
            .repo_tags
            .iter()
            .flatten()
            .any(|tag| familiar(tag) == wanted)
    });
    let Some(entry) = entry else {
        let held: Vec<&str> = manifest
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten())
            .map(String::as_str)
            .collect();
        bail!(
            "the image archive {} does not hold {reference} (it holds: {})\nhint: save it with that name: `docker save {reference} -o ...`",
            archive.display(),
            if held.is_empty() {
                "no tagged image".to_owned()
            } else {
                held.join(", ")
            }
        );
    };
    let digest = entry
        .config
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json");
    if drover_catalog::sha::Sha256::parse(digest).is_none() {
        bail!(
            "the image archive {} names its config `{}`, not a sha256 digest",
            archive.display(),
            entry.config
        );
    }
    Ok(format!("sha256:{digest}"))
}

fn read_manifest(archive: &Path) -> Result<Vec<ManifestEntry>> {
    let file = fs_err::File::open(archive)?;
    let mut tar = tar::Archive::new(file);
    let not_an_archive = || format!("{} is not a `docker save` archive", archive.display());
    for entry in tar.entries_with_seek().with_context(not_an_archive)? {
        let mut entry = entry.with_context(not_an_archive)?;
        let path = entry.path().with_context(not_an_archive)?;
        if path.as_os_str() != "manifest.json" {
            continue;
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .with_context(not_an_archive)?;
        return serde_json::from_str(&text)
            .with_context(|| format!("the manifest.json of {} cannot be read", archive.display()));
    }
    bail!("{}: it has no manifest.json", not_an_archive())
}

/// A reference as `docker save` writes it: no `docker.io/library/`, a tag.
fn familiar(reference: &str) -> String {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    let name_start = short.rfind('/').map_or(0, |i| i + 1);
    let tagged = short[name_start..].contains(':') || short.contains('@');
    match tagged {
        true => short.to_owned(),
        false => format!("{short}:latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(manifest: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header.clone(), "layer.tar", &b"abc"[..])
            .unwrap();
        header.set_size(manifest.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, "manifest.json", manifest.as_bytes())
            .unwrap();
        builder.finish().unwrap();
        file
    }

    const DIGEST: &str = "fedd4c2b8d66ad13875ebe3df06db2a272b2134d17c31190e0661e40c144b79a";

    #[test]
    fn the_image_id_comes_from_the_manifest_in_both_layouts() {
        for config in [format!("{DIGEST}.json"), format!("blobs/sha256/{DIGEST}")] {
            let manifest = format!(
                r#"[{{"Config":"{config}","RepoTags":["drover-test/web:2"],"Layers":[]}}]"#
            );
            let file = archive_with(&manifest);
            let id = image_id(file.path(), "drover-test/web:2").unwrap();
            assert_eq!(id, format!("sha256:{DIGEST}"));
        }
    }

    #[test]
    fn references_match_in_their_familiar_form() {
        let manifest = format!(r#"[{{"Config":"{DIGEST}.json","RepoTags":["busybox:latest"]}}]"#);
        let file = archive_with(&manifest);
        for reference in ["busybox", "busybox:latest", "docker.io/library/busybox"] {
            assert!(image_id(file.path(), reference).is_ok(), "{reference}");
        }
    }

    #[test]
    fn an_archive_without_the_image_says_what_it_holds() {
        let manifest = format!(r#"[{{"Config":"{DIGEST}.json","RepoTags":["other:1"]}}]"#);
        let file = archive_with(&manifest);
        let err = image_id(file.path(), "web:2").unwrap_err().to_string();
        assert!(
            err.contains("does not hold web:2 (it holds: other:1)"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_no_archive_is_named() {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs_err::write(file.path(), b"not a tarball at all").unwrap();
        let err = format!("{:#}", image_id(file.path(), "web:2").unwrap_err());
        assert!(err.contains("is not a `docker save` archive"), "{err}");
    }
}
