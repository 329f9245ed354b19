//! Documents: uploads (multipart, read part by part), list, show, delete.

use super::*;

fn multipart_error(e: MultipartError) -> ServiceError {
    body_error(
        e.status(),
        e.body_text(),
        "invalid_multipart",
        "server.max_upload_bytes",
    )
}

/// One uploaded file, read whole.
struct Upload {
    name: String,
    /// The file name as sent, directories included: the document's `path`.
    path: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// The parts of an upload form, read.
struct UploadParts {
    files: Vec<Upload>,
    /// `document_id` fields, one per file or none.
    ids: Vec<DocumentId>,
    /// `tags` fields as sent, for every file.
    tags: Vec<String>,
}

async fn read_uploads(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    max_parts: usize,
) -> Result<UploadParts, ServiceError> {
    let mut multipart =
        multipart.map_err(|e| ServiceError::bad_request("invalid_multipart", e.body_text()))?;
    let mut files = Vec::new();
    let mut ids = Vec::new();
    let mut tags = Vec::new();
    let mut parts = 0usize;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > max_parts {
            return Err(ServiceError::over_limit(
                "too_many_parts",
                "the upload",
                parts,
                "or more parts (files and fields)",
                max_parts,
                "server.max_upload_parts",
            ));
        }
        match field.name() {
            Some("file") => {}
            Some("tags") => {
                tags.push(field.text().await.map_err(multipart_error)?);
                continue;
            }
            Some("document_id") => {
                ids.push(DocumentId::new(
                    field.text().await.map_err(multipart_error)?,
                )?);
                continue;
            }
            _ => continue,
        }
        let path = field
            .file_name()
            .map(str::to_string)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ServiceError::bad_request("missing_file_name", "every file part needs a file name")
            })?;
        // The name shown to users is the last path component; clients send paths
        // ("../x", "hr/2024/leave.md"), which are never used to build a path on the
        // server. The whole path is kept as metadata to filter on.
        let name = relative_path(&path)
            .rsplit('/')
            .next()
            .unwrap_or("unnamed")
            .to_string();
        let content_type = field.content_type().map(str::to_string);
        let bytes = field.bytes().await.map_err(multipart_error)?.to_vec();
        files.push(Upload {
            name,
            path,
            content_type,
            bytes,
        });
    }
    if files.is_empty() {
        return Err(ServiceError::bad_request(
            "no_files",
            "the request has no `file` part",
        ));
    }
    if !ids.is_empty() && ids.len() != files.len() {
        return Err(ServiceError::bad_request(
            "invalid_document_id",
            format!(
                "{} document_id fields for {} files: give one per file, in the same order, or none",
                ids.len(),
                files.len()
            ),
        ));
    }
    Ok(UploadParts { files, ids, tags })
}

/// A client's file path as a clean relative path, the key of its document id: folders
/// kept (`hr/2023/leave.md` and `hr/2024/leave.md` are two documents), `.`, `..`, empty
/// parts and the difference between `/` and `\\` dropped. A bare file name is itself, so
/// its id is what it always was.
pub(crate) fn relative_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|part| !part.trim().is_empty() && *part != ".." && *part != ".")
        .collect();
    if parts.is_empty() {
        "unnamed".to_string()
    } else {
        parts.join("/")
    }
}

/// Upload documents
///
/// Parses, chunks, embeds and indexes the files; the knowledge base is created on first
/// upload. Each file succeeds or fails alone: failures of some files are listed in
/// `errors`, and only when every file failed is the answer an error, whose status is the
/// first failure's (`error.files` lists them all). Identical content is `unchanged`;
/// changed content replaces the stored version atomically.
#[utoipa::path(post, path = "/v1/kbs/{kb}/documents", tag = "documents",
    params(KbPath, UploadParams),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Searchable now (`wait=true`).", body = UploadResponse),
        (status = 202, description = "Queued as a job (`wait=false`); follow it at `/v1/jobs/{id}`.", body = JobAccepted),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ))]
pub(crate) async fn upload(
    State(s): State<AppState>,
    NewKb(kb): NewKb,
    params: Result<Query<UploadParams>, QueryRejection>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let UploadParts { files, ids, tags } =
        read_uploads(multipart, s.config.server.max_upload_parts).await?;
    let tags = zhiku_jobs::normalize_tags(&tags)?;
    let ids: Vec<DocumentId> = if ids.is_empty() {
        files
            .iter()
            .map(|f| zhiku_ingest::document_id(&kb, &relative_path(&f.path)))
            .collect()
    } else {
        ids
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(ServiceError::bad_request(
            "duplicate_document",
            format!("two files of this upload map to document {dup:?}; upload them separately"),
        )
        .into());
    }
    if !params.wait {
        let files = files
            .into_iter()
            .zip(ids)
            .map(|(f, document_id)| UploadFile {
                name: f.name,
                path: f.path,
                document_id,
                content_type: f.content_type,
                bytes: f.bytes,
            })
            .collect();
        let job = blocking(move || Ok(s.jobs()?.submit_upload(&kb, files, tags)?)).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id: job.id })).into_response());
    }
    let inputs: Vec<Input> = files
        .into_iter()
        .zip(ids)
        .map(|(f, document_id)| Input {
            name: f.name,
            path: f.path,
            tags: tags.clone(),
            document_id,
            content_type: f.content_type,
            source: InputSource::Bytes(f.bytes.into()),
        })
        .collect();
    blocking(move || {
        let (documents, errors) = s.ingest_now(&kb, inputs)?;
        match errors.first() {
            Some(first) if documents.is_empty() => Err(ServiceError::UploadFailed {
                code: first.code.clone(),
                files: errors,
            }),
            _ => Ok((
                StatusCode::CREATED,
                Json(UploadResponse { documents, errors }),
            )
                .into_response()),
        }
    })
    .await
}

/// List documents
///
/// One page of documents in id order; pass `next_cursor` as `cursor` for the next.
#[utoipa::path(get, path = "/v1/kbs/{kb}/documents", tag = "documents",
    params(KbPath, DocumentListParams), responses(
        (status = 200, description = "A page of documents.", body = DocumentList),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn list_documents(
    State(s): State<AppState>,
    Kb(kb): Kb,
    params: Result<Query<DocumentListParams>, QueryRejection>,
) -> Result<Json<DocumentList>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ServiceError::bad_request("invalid_limit", "limit must be between 1 and 1000").into(),
        );
    }
    blocking(move || {
        let (documents, more) = s.kb(&kb)?.documents(params.cursor.as_deref(), limit)?;
        let next_cursor = more
            .then(|| documents.last().map(|d| d.id.clone()))
            .flatten();
        Ok(Json(DocumentList {
            documents,
            next_cursor,
        }))
    })
    .await
}

/// Get a document
///
/// Name, path, format, tags, chunks, status, content hash, size, version and dates.
#[utoipa::path(get, path = "/v1/kbs/{kb}/documents/{id}", tag = "documents",
    params(DocumentPath), responses(
        (status = 200, description = "The document.", body = DocumentInfo),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn get_document(
    State(s): State<AppState>,
    DocPath { kb, id }: DocPath,
) -> Result<Json<DocumentInfo>, ApiError> {
    blocking(move || {
        s.kb(&kb)?.document(&id)?.map(Json).ok_or_else(|| {
            ServiceError::NotFound(format!("document {id:?} does not exist in {kb:?}"))
        })
    })
    .await
}

/// Delete a document
///
/// Removes its chunks from both indexes and its catalog entry.
#[utoipa::path(delete, path = "/v1/kbs/{kb}/documents/{id}", tag = "documents",
    params(DocumentPath), responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn delete_document(
    State(s): State<AppState>,
    DocPath { kb, id }: DocPath,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if s.kb(&kb)?.delete_document(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ServiceError::NotFound(format!(
                "document {id:?} does not exist in {kb:?}"
            )))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_paths_become_clean_relative_paths() {
        for (path, expected) in [
            ("leave.md", "leave.md"),
            ("hr/2024/leave.md", "hr/2024/leave.md"),
            ("./hr\\2024//leave.md", "hr/2024/leave.md"),
            ("../../etc/passwd", "etc/passwd"),
            ("/abs/x.txt", "abs/x.txt"),
            ("..", "unnamed"),
        ] {
            assert_eq!(super::relative_path(path), expected, "{path}");
        }
    }
}
