//! Server-side directories as job input: confinement to import roots, and listing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zhiku_schemas::{DocumentId, KbName};

use crate::JobError;

/// Where a file's bytes are.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// On disk, in a directory of the server's own (staged uploads).
    Path(PathBuf),
    /// On disk under an import root: read only if the file actually opened still lies
    /// inside `root`, whatever symlinks were swapped in since the listing.
    Confined {
        /// The file as listed.
        path: PathBuf,
        /// The resolved import directory it must stay in.
        root: PathBuf,
    },
    /// In memory (a synchronous upload).
    Bytes(Arc<[u8]>),
}

/// One file to ingest.
#[derive(Debug, Clone)]
pub struct Input {
    /// File name or path relative to the job's directory; becomes the document name.
    pub name: String,
    /// The document's `path` for filters: the file name as the client sent it (with its
    /// directories), or the path relative to the imported directory.
    pub path: String,
    /// The document's tags, already normalised ([`normalize_tags`](crate::normalize_tags)).
    pub tags: Vec<String>,
    /// Document id to store it under.
    pub document_id: DocumentId,
    /// Content type declared by the client, a hint for format detection.
    pub content_type: Option<String>,
    /// The bytes.
    pub source: InputSource,
}

/// Resolves `path` (following `..` and symlinks) and checks that it lies inside one of
/// `roots`, themselves resolved. Returns the resolved directory.
///
/// A path that does not exist and one outside the roots get the same 403, so that the
/// answer does not tell a caller which server paths exist.
pub fn confine(path: &str, roots: &[PathBuf]) -> Result<PathBuf, JobError> {
    if roots.is_empty() {
        return Err(JobError::Forbidden(
            "server-side imports are disabled for this knowledge base: no import roots are configured ([jobs] import_roots, [jobs.kb_import_roots])"
                .into(),
        ));
    }
    let refused = || {
        JobError::Forbidden(format!(
            "path {path:?} is not an existing directory inside the import roots of this knowledge base"
        ))
    };
    let resolved = std::fs::canonicalize(path).map_err(|_| refused())?;
    let inside = roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|root| resolved.starts_with(&root));
    if !inside {
        return Err(refused());
    }
    if !resolved.is_dir() {
        return Err(JobError::Invalid(format!(
            "path {path:?} is not a directory"
        )));
    }
    Ok(resolved)
}

/// Opens `path` for reading, then checks where the opened file really is (its
/// `/proc/self/fd` link): a file outside `root` is refused even when a directory on the
/// way was swapped for a symlink after the listing, since the check is on what was opened.
pub fn open_confined(path: &Path, root: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if !opened.starts_with(root) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the file now resolves outside the import root; not read",
        ));
    }
    Ok(file)
}

/// Checks a glob pattern (e.g. `**/*.md`).
pub fn compile_glob(glob: Option<&str>) -> Result<Option<glob::Pattern>, JobError> {
    glob.map(|g| glob::Pattern::new(g).map_err(|e| JobError::Invalid(format!("glob {g:?}: {e}"))))
        .transpose()
}

/// Lists the regular files under `dir` (recursively, sorted, hidden entries skipped)
/// whose relative path matches `glob`; the relative path is each input's name, document
/// id and `path`, and tags are left to the job. A path that cannot be an id (over 512
/// bytes, control characters in a file name) gets the id an upload of that name into `kb`
/// would. A symlink is followed only if its target is still inside `dir`, so a link cannot
/// smuggle files from outside the import root.
pub fn list(kb: &KbName, dir: &Path, glob: Option<&glob::Pattern>) -> Result<Vec<Input>, JobError> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut inputs = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry =
            entry.map_err(|e| JobError::Invalid(format!("listing {}: {e}", dir.display())))?;
        let path = entry.path();
        let file = if entry.file_type().is_symlink() {
            match std::fs::canonicalize(path) {
                Ok(target) if target.starts_with(dir) && target.is_file() => target,
                _ => continue,
            }
        } else if entry.file_type().is_file() {
            path.to_path_buf()
        } else {
            continue;
        };
        let Ok(relative) = path.strip_prefix(dir) else {
            continue;
        };
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if glob.is_some_and(|g| !g.matches_with(&name, options)) {
            continue;
        }
        inputs.push(Input {
            document_id: DocumentId::new(name.clone())
                .unwrap_or_else(|_| zhiku_ingest::document_id(kb, &name)),
            path: name.clone(),
            name,
            tags: Vec::new(),
            content_type: None,
            source: InputSource::Confined {
                path: file,
                root: dir.to_path_buf(),
            },
        });
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement_and_listing() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let docs = root.path().join("docs");
        std::fs::create_dir_all(docs.join("sub")).unwrap();
        std::fs::create_dir_all(docs.join(".git")).unwrap();
        std::fs::write(docs.join("a.md"), "# A").unwrap();
        std::fs::write(docs.join("sub/b.txt"), "b").unwrap();
        std::fs::write(docs.join(".git/config"), "x").unwrap();
        std::fs::write(outside.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), docs.join("link.txt"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        let roots = vec![root.path().to_path_buf()];

        let dir = confine(docs.to_str().unwrap(), &roots).unwrap();
        let names: Vec<String> = list(&KbName::new("kb").unwrap(), &dir, None)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["a.md", "sub/b.txt"]);
        let md = compile_glob(Some("**/*.md")).unwrap();
        let names: Vec<String> = list(&KbName::new("kb").unwrap(), &dir, md.as_ref())
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["a.md"]);
        // A name that cannot be an id still imports, under the id an upload would get.
        let kb = KbName::new("kb").unwrap();
        std::fs::write(docs.join("odd\nname.txt"), "c").unwrap();
        let listed = list(&kb, &dir, None).unwrap();
        let odd = listed.iter().find(|i| i.name == "odd\nname.txt").unwrap();
        assert_eq!(
            odd.document_id,
            zhiku_ingest::document_id(&kb, "odd\nname.txt")
        );
        assert_eq!(
            listed
                .iter()
                .find(|i| i.name == "a.md")
                .unwrap()
                .document_id
                .as_str(),
            "a.md"
        );

        let dotdot = format!("{}/../..", docs.display());
        assert!(matches!(
            confine(&dotdot, &roots),
            Err(JobError::Forbidden(_))
        ));
        let escape = root.path().join("escape");
        assert!(matches!(
            confine(escape.to_str().unwrap(), &roots),
            Err(JobError::Forbidden(_))
        ));
        // Missing and outside look alike: the answer tells nothing of the server's files.
        assert!(matches!(
            confine("/nonexistent/dir", &roots),
            Err(JobError::Forbidden(_))
        ));
        assert!(matches!(
            confine(docs.join("a.md").to_str().unwrap(), &roots),
            Err(JobError::Invalid(_))
        ));
        assert!(matches!(
            confine(docs.to_str().unwrap(), &[]),
            Err(JobError::Forbidden(_))
        ));
        assert!(compile_glob(Some("[")).is_err());
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_after_listing_is_not_read() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let sub = root.path().join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("a.txt"), "inside").unwrap();
        std::fs::write(outside.path().join("a.txt"), "secret").unwrap();
        let dir = std::fs::canonicalize(root.path()).unwrap();
        let listed = list(&KbName::new("kb").unwrap(), &dir, None).unwrap();
        let InputSource::Confined {
            path,
            root: confined,
        } = &listed[0].source
        else {
            panic!("imports are confined");
        };
        assert!(open_confined(path, confined).is_ok());
        // Between listing and reading, sub/ becomes a link to a directory outside.
        std::fs::rename(&sub, root.path().join("old")).unwrap();
        std::os::unix::fs::symlink(outside.path(), &sub).unwrap();
        let err = open_confined(path, confined).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    }
}
