//! Records the stores keep that the API never returns as such: a chunk as both indexes
//! hold it. (`DocumentInfo`, `JobInfo` and `ConversationTurn` are API types that the
//! catalog and the conversation store also persist: a field change there is a storage
//! change too.)

use serde::{Deserialize, Serialize};

/// One chunk of a document as it is stored in both indexes and returned by search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Stable id of the chunk: `<document_id>#<index>`.
    pub chunk_id: String,
    /// Id of the document the chunk came from.
    pub document_id: String,
    /// File name the document was uploaded as.
    pub document_name: String,
    /// Position of the chunk in its document, from 0.
    pub chunk_index: u32,
    /// The chunk text exactly as stored.
    pub text: String,
    /// Heading path of the section the chunk belongs to, joined with " > ".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// 1-based page the chunk starts on: of a PDF, or of an image (1 unless a multi-page
    /// TIFF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Whether the text was recognised by OCR (a scanned page, an image) rather than read
    /// from the file's own text.
    #[serde(default)]
    pub ocr: bool,
    /// For OCR text: the recognizer's mean word confidence, 0 to 100, over the page or
    /// image the chunk came from. Low values mean the text may be garbled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr_confidence: Option<f32>,
    /// Version of the document this chunk belongs to. Both indexes briefly hold two
    /// versions while a document is replaced; only the catalog's current one is visible.
    #[serde(default)]
    pub version: u64,
    /// The document's tags. Every chunk carries its document's metadata so that both
    /// indexes can filter inside their own search, and so that a chunk read back from
    /// either store is enough to rebuild the other.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The document's source path (see [`DocumentInfo::path`]).
    #[serde(default)]
    pub path: String,
    /// MIME type of the document's format (see [`DocumentInfo::format`]).
    #[serde(default)]
    pub mime: String,
}

impl ChunkRecord {
    /// Builds the chunk id from its parts; the one place that defines the id format.
    pub fn make_id(document_id: &str, chunk_index: u32) -> String {
        format!("{document_id}#{chunk_index}")
    }
}
