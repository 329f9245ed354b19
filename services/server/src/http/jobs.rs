//! Background jobs: create, list, show, cancel, and their event stream.

use super::*;

/// Import a server directory
///
/// Starts a batch job that ingests the files of a directory on the server, which must lie
/// inside a configured import root (`..` and symlinks are resolved first). Each file's
/// path relative to the directory becomes its document id.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJobRequest, responses(
    (status = 202, description = "Queued; follow it at `/v1/jobs/{id}`.", body = JobAccepted),
    (status = 400, response = BadRequest),
    (status = 403, response = Forbidden),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn create_job(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<CreateJobRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let request = json_body(body)?;
    let kb = KbName::new(request.kb)?;
    principal.write(&kb)?;
    let job = blocking(move || {
        Ok(s.jobs()?
            .submit_import(&kb, &request.path, request.glob.as_deref(), &request.tags)?)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id: job.id })))
}

/// List jobs
///
/// The jobs of the knowledge bases the caller may read, newest first, with their progress.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses(
    (status = 200, description = "The jobs.", body = JobList),
))]
pub(crate) async fn list_jobs(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<JobList>, ApiError> {
    blocking(move || {
        let mut jobs = s.jobs()?.list()?;
        jobs.retain(|job| principal.can_read(&job.kb));
        Ok(Json(JobList { jobs }))
    })
    .await
}

fn job_not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("job {id:?} does not exist"))
}

/// The job `id` if the caller may read its knowledge base; otherwise the same 404 as for
/// a job that does not exist.
fn visible_job(s: &Services, principal: &Principal, id: &str) -> Result<JobInfo, ServiceError> {
    s.jobs()?
        .get(id)?
        .filter(|job| principal.can_read(&job.kb))
        .ok_or_else(|| job_not_found(id))
}

/// Get a job
///
/// State, file and chunk counts, rate, ETA and per-file errors.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(JobPath), responses(
    (status = 200, description = "The job.", body = JobInfo),
    (status = 404, response = NotFound),
))]
pub(crate) async fn get_job(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobInfo>, ApiError> {
    blocking(move || visible_job(&s, &principal, &id).map(Json)).await
}

/// Cancel a job
///
/// Stops a queued or running job; documents it already committed stay.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(JobPath), responses(
    (status = 200, description = "The job, cancelled.", body = JobInfo),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn cancel_job(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobInfo>, ApiError> {
    blocking(move || {
        principal.write(&visible_job(&s, &principal, &id)?.kb)?;
        Ok(Json(s.jobs()?.cancel(&id)?))
    })
    .await
}

/// Follow a job
///
/// Progress as Server-Sent Events: a `progress` event per change, then one `done` event
/// with the final state, then the stream ends. The `data` of both is a `JobInfo`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(JobPath), responses(
    (status = 200, description = "Server-Sent Events `progress` (data: `JobInfo`), then `done` (data: `JobInfo`).",
        content_type = "text/event-stream", body = String,
        example = "event: progress\ndata: {\"id\":\"…\",\"state\":\"running\",…}\n\nevent: done\ndata: {\"id\":\"…\",\"state\":\"succeeded\",…}\n\n"),
    (status = 404, response = NotFound),
))]
pub(crate) async fn job_events(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let lookup = id.clone();
    let receiver = blocking(move || {
        visible_job(&s, &principal, &lookup)?;
        Ok(s.jobs()?.subscribe(&lookup)?)
    })
    .await?
    .ok_or_else(|| job_not_found(&id))?;
    let stream = futures_util::stream::unfold(Some((receiver, true)), |state| async move {
        let (mut receiver, first) = state?;
        if !first && receiver.changed().await.is_err() {
            // The sender is gone: the job finished; report the last state as done.
            let info = receiver.borrow().clone();
            return Some((Ok(job_event("done", &info)), None));
        }
        let info = receiver.borrow_and_update().clone();
        if info.state.is_finished() {
            return Some((Ok(job_event("done", &info)), None));
        }
        Some((Ok(job_event("progress", &info)), Some((receiver, false))))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn job_event(name: &str, info: &JobInfo) -> Event {
    Event::default()
        .event(name)
        .json_data(info)
        .unwrap_or_else(|_| Event::default().event(name))
}
