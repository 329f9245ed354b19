//! Documents: what a knowledge base holds per file, and uploads.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A document as stored in a knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DocumentInfo {
    /// Stable document id: given by the client, the relative path in a batch job, or
    /// derived from KB and file name.
    pub id: String,
    /// File name (or relative path) it was uploaded as.
    pub name: String,
    /// Number of chunks indexed.
    pub chunks: usize,
    /// Lifecycle status; `indexed` once searchable.
    #[serde(default)]
    pub status: DocumentStatus,
    /// Why the status is what it is, for `empty` documents: e.g. OCR found no text on the
    /// image, or the PDF has no text layer and OCR is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pages (or embedded images) read by OCR, in document order, each with its confidence
    /// or the error that made it fail alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ocr_pages: Vec<OcrPage>,
    /// Detected format (MIME type): what `filter.mime_types` of a search matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Tags given at upload (`tags` form fields) or import (`tags` of the job), for
    /// filtering searches.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where the document came from, for `filter.path_prefix`: the file name as the client
    /// sent it for an upload (it may contain `/`, unlike `name`), the path relative to the
    /// imported directory for an import. Relative, so that importing a folder on the server
    /// and uploading it with `zhiku ingest --server` give the same paths.
    #[serde(default)]
    pub path: String,
    /// `sha256:<hex>` of the file content together with the pipeline settings that shaped
    /// its chunks; an upload with the same hash is `unchanged`.
    #[serde(default)]
    pub hash: String,
    /// File size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Stored version, increasing with every change of content.
    #[serde(default)]
    pub version: u64,
    /// When the document was first indexed (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// When its current version was indexed (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

/// Where a document is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// All chunks are in both indexes and searchable.
    #[default]
    Indexed,
    /// Startup reconciliation found chunks missing from an index (e.g. after a disk
    /// failure); upload the file again to repair it.
    Damaged,
    /// The file was read but yielded no text (an image or scan where OCR found none, or a
    /// scanned PDF while OCR is disabled); it has no chunks, and `reason` says why. Kept
    /// so that such files are visible rather than silently missing.
    Empty,
}

/// One page (or embedded image) of a document read by OCR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OcrPage {
    /// 1-based page of the PDF or multi-page image; absent for images embedded in a
    /// DOCX, which have no pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// For an image embedded in a DOCX: its part name, e.g. `word/media/image1.png`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Mean word confidence, 0 to 100; absent when no word was found or the page failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Words recognised.
    #[serde(default)]
    pub words: usize,
    /// Why this page failed (time limit, unreadable image); the rest of the document is
    /// indexed without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an upload or a job did with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentOutcome {
    /// A new document.
    Created,
    /// New content replaced the previous version.
    Updated,
    /// Same content as stored: nothing was done.
    Unchanged,
}

/// One document of an upload response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadedDocument {
    /// The document as now stored.
    #[serde(flatten)]
    pub document: DocumentInfo,
    /// What the upload did to it.
    pub outcome: DocumentOutcome,
}

/// `POST /v1/kbs/{kb}/documents` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    /// Documents of this upload, searchable when the response is sent.
    pub documents: Vec<UploadedDocument>,
    /// Files of the same upload that failed; each failed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FileError>,
}

/// Why one file of an upload or job was not indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileError {
    /// File name as uploaded, or path relative to the job's directory.
    pub name: String,
    /// Machine-readable error code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Pipeline stage that failed: `read`, `parse`, `ocr`, `chunk`, `embed` or `index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// `GET /v1/kbs/{kb}/documents` response: one page of documents ordered by id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentList {
    /// Documents of this page.
    pub documents: Vec<DocumentInfo>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query of `POST /v1/kbs/{kb}/documents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Wait until the files are searchable and answer 201 (default), or answer 202 with a
    /// job id at once (`false`).
    #[serde(default = "yes")]
    #[param(default = true)]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// The multipart form of `POST /v1/kbs/{kb}/documents`. The server reads the parts one by
/// one as they stream in, so this type only describes the form for the API reference.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadForm {
    /// The files, one part each, with a file name (which may contain a path: it becomes
    /// the document's `path`; its last component the `name`).
    #[schema(value_type = Vec<String>, format = Binary)]
    pub file: Vec<Vec<u8>>,
    /// Document ids: none (ids are derived from KB and file name), or one per file in the
    /// same order; 1-512 bytes without control characters.
    #[serde(default)]
    pub document_id: Vec<String>,
    /// Tags for every file of the upload; a part may hold several separated by commas (at
    /// most 32 tags of 64 characters).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Query of `GET /v1/kbs/{kb}/documents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocumentListParams {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}
/// A document id that has been checked: 1-512 bytes, no control characters (they would
/// break composite catalog keys and log lines), not only whitespace.
///
/// Ids come from clients (upload fields), from file paths (imports) or are derived from a
/// file name; each source checks once and the pipeline takes only this type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DocumentId(String);

impl DocumentId {
    /// Checks `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidDocumentId> {
        let id = id.into();
        let valid = (1..=512).contains(&id.len())
            && !id.chars().any(char::is_control)
            && !id.trim().is_empty();
        if valid {
            Ok(Self(id))
        } else {
            Err(InvalidDocumentId(id))
        }
    }
}

checked_string!(DocumentId, InvalidDocumentId);

/// A string that is not a valid document id; it says what a valid one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDocumentId(pub String);

impl std::fmt::Display for InvalidDocumentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid document_id {:?}: use 1-512 bytes without control characters",
            self.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids() {
        for good in ["docs/guide.md", "合同-2024", "a b"] {
            assert_eq!(DocumentId::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "a\u{1f}b", "line\nbreak", "   ", &"x".repeat(513)] {
            assert_eq!(
                DocumentId::new(bad),
                Err(InvalidDocumentId(bad.to_string()))
            );
        }
    }
}
