"""Tenant pages: datasets, algorithms, jobs and tuning jobs, models, notifications.

Every handler gets its tenant from the verified identity (``TenantDep``) and acts with that
tenant's assumed-role clients; no path, query or form value names the tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from training_common import (
    FINAL_STATUSES,
    Job,
    JobKind,
    ModelApprovalStatus,
    ModelVersion,
    TrainingRequest,
)

from .. import charts
from ..errors import BadRequest, NotFound, wants_json
from ..services import datasets, forms, jobs, models, tuning
from ..web import FormDep, IdentityDep, Portal, PortalDep, TenantCaller, TenantDep, render

router = APIRouter()

NOTIFICATIONS_PAGE_SIZE = 50

NOTICES = {
    "uploaded": "The file was uploaded.",
    "submitted": "The job was queued.",
    "decision-recorded": (
        "Your decision was recorded; the status changes once SageMaker confirms it."
    ),
    "stop-requested": "Stopping the job was requested; its status changes in a moment.",
}


def _job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


def _model_json(model: ModelVersion) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _next_token(request: Request) -> str | None:
    """The ``next`` query parameter: the continuation token of a paginated list."""
    return request.query_params.get("next") or None


@router.get("/", include_in_schema=False)
def home(identity: IdentityDep, portal: PortalDep) -> Response:
    if identity.tenant_id is None and portal.settings.admin_group in identity.groups:
        return RedirectResponse("/admin/tenants", status_code=303)
    return RedirectResponse("/jobs", status_code=303)


@router.get("/datasets", name="datasets_page")
def datasets_page(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    found = datasets.list_datasets(caller.aws, portal.settings.data_bucket)
    if wants_json(request):
        return JSONResponse(
            [
                {
                    "name": d.name,
                    "key": d.key,
                    "size": d.size,
                    "files": [{"name": f.name, "size": f.size} for f in d.files],
                }
                for d in found
            ]
        )
    return render(
        request,
        "datasets.html",
        {
            "datasets": found,
            "content_types": portal.settings.upload_content_types,
            "max_upload_bytes": portal.settings.max_upload_bytes,
            "notice": NOTICES.get(request.query_params.get("notice", "")),
            "uploaded_key": request.query_params.get("key"),
        },
    )


@router.get("/datasets/upload")
def upload_form(
    request: Request,
    caller: TenantDep,
    portal: PortalDep,
    dataset: str = "",
    content_type: str = "",
) -> Response:
    redirect = str(request.url_for("datasets_page").include_query_params(notice="uploaded"))
    post = datasets.presigned_upload(
        caller.aws,
        bucket=portal.settings.data_bucket,
        dataset_name=dataset,
        content_type=content_type,
        allowed_content_types=portal.settings.upload_content_types,
        max_bytes=portal.settings.max_upload_bytes,
        redirect_url=redirect,
        expires=portal.settings.presigned_url_seconds,
    )
    if wants_json(request):
        return JSONResponse(post)
    return render(
        request,
        "upload.html",
        {"post": post, "dataset": dataset.strip(), "content_type": content_type},
    )


@router.get("/algorithms")
def algorithms_page(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    tenant = jobs.tenant_record(caller.aws)
    entries = jobs.visible_algorithms(tenant, portal.aws.catalog)
    if wants_json(request):
        return JSONResponse([entry.model_dump(mode="json", by_alias=True) for entry in entries])
    return render(request, "algorithms.html", {"algorithms": entries})


@router.get("/jobs", name="jobs_page")
def jobs_page(request: Request, caller: TenantDep) -> Response:
    token = _next_token(request)
    page = jobs.list_page(caller.aws, token)
    if wants_json(request):
        return JSONResponse(
            {"items": [_job_json(job) for job in page.items], "next": page.next_token}
        )
    return render(
        request,
        "jobs.html",
        {
            "jobs": page.items,
            "next_token": page.next_token,
            "first_page": token is None,
            "live": any(jobs.is_live(job) for job in page.items),
            "notice": NOTICES.get(request.query_params.get("notice", "")),
        },
    )


def _job_form(
    request: Request,
    caller: TenantCaller,
    portal: Portal,
    *,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    tenant = jobs.tenant_record(caller.aws)
    entries = jobs.visible_algorithms(tenant, portal.aws.catalog)
    found = datasets.list_datasets(caller.aws, portal.settings.data_bucket)
    defaults = {
        entry.id: forms.format_key_values(entry.default_hyperparameters) for entry in entries
    }
    return render(
        request,
        "job_form.html",
        {
            "tenant": tenant,
            "algorithms": entries,
            "datasets": found,
            "default_hyperparameters": defaults,
            "values": values or {},
            "errors": errors or [],
        },
        status_code=status_code,
    )


@router.get("/jobs/new")
def new_job(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    return _job_form(request, caller, portal)


@router.post("/jobs")
def submit_job(request: Request, caller: TenantDep, portal: PortalDep, form: FormDep) -> Response:
    return _submit(
        request,
        caller,
        portal,
        form,
        lambda: jobs.request_from_form(caller.tenant_id, caller.identity.display, form),
        _job_form,
    )


def _submit(
    request: Request,
    caller: TenantCaller,
    portal: Portal,
    form: dict[str, str],
    build: Callable[[], TrainingRequest],
    form_page: Callable[..., Response],
) -> Response:
    """Build the request from the form, submit it (first check, QUEUED record, queue), and
    answer 201 JSON or a redirect to the job; a bad form comes back with its errors (400)."""
    try:
        job, note = jobs.submit(
            caller.aws, portal.aws.catalog, portal.settings.training_requests_queue_url, build()
        )
    except BadRequest as error:
        if wants_json(request):
            raise
        return form_page(
            request,
            caller,
            portal,
            values=form,
            errors=[error.message, *error.details],
            status_code=400,
        )
    if wants_json(request):
        return JSONResponse({"job": _job_json(job), "note": note}, status_code=201)
    return RedirectResponse(f"/jobs/{job.job_id}?notice=submitted", status_code=303)


def _tune_form(
    request: Request,
    caller: TenantCaller,
    portal: Portal,
    *,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    tenant = jobs.tenant_record(caller.aws)
    entries = tuning.tunable_algorithms(jobs.visible_algorithms(tenant, portal.aws.catalog))
    chosen = (values or {}).get("algorithm_id") or request.query_params.get("algorithm_id")
    selected = next((entry for entry in entries if entry.id == chosen), None)
    if selected is None and entries:
        selected = entries[0]
    defaults: dict[str, str] = {}
    for entry in entries:
        defaults.update(tuning.form_defaults(entry))
    first_metric = selected.tuning_objectives[0] if selected else ""
    return render(
        request,
        "tune_form.html",
        {
            "tenant": tenant,
            "algorithms": entries,
            "selected": selected,
            "datasets": datasets.list_datasets(caller.aws, portal.settings.data_bucket),
            "default_hyperparameters": {
                entry.id: forms.format_key_values(entry.default_hyperparameters)
                for entry in entries
            },
            "field_defaults": defaults,
            "directions": {
                metric: tuning.suggested_direction(metric).value
                for entry in entries
                for metric in entry.tuning_objectives
            },
            "default_direction": tuning.suggested_direction(first_metric).value,
            "values": values or {},
            "errors": errors or [],
        },
        status_code=status_code,
    )


@router.get("/jobs/tune")
def tune_form(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    return _tune_form(request, caller, portal)


@router.post("/jobs/tune")
def submit_tuning_job(
    request: Request, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    return _submit(
        request,
        caller,
        portal,
        form,
        lambda: tuning.request_from_form(
            caller.tenant_id, caller.identity.display, form, portal.aws.catalog
        ),
        _tune_form,
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, caller: TenantDep) -> Response:
    job = jobs.get(caller.aws, job_id)
    context: dict[str, Any] = {
        "job": job,
        "live": jobs.is_live(job),
        "final": job.status in FINAL_STATUSES,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "tuning_job": job.kind == JobKind.TUNING and job.tuning is not None,
    }
    if job.kind == JobKind.TUNING and job.tuning is not None:
        token = _next_token(request)
        page = tuning.trials_page(caller.aws, job, token)
        if wants_json(request):
            return JSONResponse(
                {
                    **_job_json(job),
                    "trials": [trial.model_dump(mode="json") for trial in page.items],
                    "next": page.next_token,
                }
            )
        charted, cut = tuning.trials_for_chart(caller.aws, job)
        context |= {
            "trials": page.items,
            "next_token": page.next_token,
            "first_page": token is None,
            "best_name": job.best_training_job.training_job_name if job.best_training_job else None,
            "objective_chart": charts.objective_chart(
                charted,
                metric=job.tuning.objective_metric,
                objective_type=job.tuning.objective_type,
            ),
            "chart_cut": cut,
            "chart_limit": tuning.MAX_CHART_TRIALS,
        }
    else:
        if wants_json(request):
            return JSONResponse(_job_json(job))
        context["metrics_chart"] = charts.metrics_chart(job.metric_series)
    context["model_version"] = caller.aws.models.get(caller.tenant_id, job.job_id)
    return render(request, "job.html", context)


@router.get("/jobs/{job_id}/model")
def download_model(job_id: str, caller: TenantDep, portal: PortalDep) -> Response:
    url = jobs.model_download_url(
        caller.aws, portal.settings.artifacts_bucket, job_id, portal.settings.presigned_url_seconds
    )
    return RedirectResponse(url, status_code=303)


@router.post("/jobs/{job_id}/stop")
def stop_job(request: Request, job_id: str, caller: TenantDep, form: FormDep) -> Response:
    jobs.stop(caller.aws, job_id)
    if wants_json(request):
        return JSONResponse({"job_id": job_id, "stop_requested": True}, status_code=202)
    return RedirectResponse(f"/jobs/{job_id}?notice=stop-requested", status_code=303)


@router.get("/notifications")
def notifications_page(request: Request, caller: TenantDep) -> Response:
    token = _next_token(request)
    page = caller.aws.notifications.list_page(
        caller.tenant_id, limit=NOTIFICATIONS_PAGE_SIZE, token=token
    )
    if wants_json(request):
        return JSONResponse(
            {
                "items": [item.model_dump(mode="json") for item in page.items],
                "next": page.next_token,
            }
        )
    return render(
        request,
        "notifications.html",
        {"notifications": page.items, "next_token": page.next_token, "first_page": token is None},
    )


@router.post("/notifications/read")
def mark_notification_read(
    request: Request, caller: TenantDep, identity: IdentityDep, form: FormDep
) -> Response:
    notification_id = forms.required(form, "notification_id", "Notification")
    if caller.aws.notifications.get(caller.tenant_id, notification_id) is None:
        raise NotFound("You have no such notification.")
    caller.aws.notifications.mark_read(caller.tenant_id, notification_id)
    if wants_json(request):
        return JSONResponse({"notification_id": notification_id, "read": True})
    return RedirectResponse("/notifications", status_code=303)


@router.get("/models")
def models_page(request: Request, caller: TenantDep) -> Response:
    token = _next_token(request)
    page = models.list_page(caller.aws, token)
    if wants_json(request):
        return JSONResponse(
            {"items": [_model_json(model) for model in page.items], "next": page.next_token}
        )
    return render(
        request,
        "models.html",
        {
            "models": page.items,
            "metric_names": models.metric_names(page.items),
            "next_token": page.next_token,
            "first_page": token is None,
        },
    )


@router.get("/models/{job_id}")
def model_page(request: Request, job_id: str, caller: TenantDep) -> Response:
    model = models.get(caller.aws, job_id)
    if wants_json(request):
        return JSONResponse(_model_json(model))
    awaiting = models.awaiting_event(model)
    return render(
        request,
        "model.html",
        {
            "model": model,
            "can_decide": models.can_decide(model),
            "awaiting_event": awaiting,
            "live": awaiting or model.approval_status == ModelApprovalStatus.REGISTERING,
            "notice": NOTICES.get(request.query_params.get("notice", "")),
        },
    )


@router.get("/models/{job_id}/download")
def download_model_version(job_id: str, caller: TenantDep, portal: PortalDep) -> Response:
    url = models.download_url(
        caller.aws, portal.settings.artifacts_bucket, job_id, portal.settings.presigned_url_seconds
    )
    return RedirectResponse(url, status_code=303)


def _decide(
    request: Request,
    job_id: str,
    caller: TenantCaller,
    form: dict[str, str],
    status: ModelApprovalStatus,
) -> Response:
    model, decision = models.decide(
        caller.aws, job_id, status, comment=form.get("comment", ""), by=caller.identity.display
    )
    if wants_json(request):
        return JSONResponse(
            {"job_id": model.job_id, "decision": decision.model_dump(mode="json")},
            status_code=202,
        )
    return RedirectResponse(f"/models/{job_id}?notice=decision-recorded", status_code=303)


@router.post("/models/{job_id}/approve")
def approve_model(request: Request, job_id: str, caller: TenantDep, form: FormDep) -> Response:
    return _decide(request, job_id, caller, form, ModelApprovalStatus.APPROVED)


@router.post("/models/{job_id}/reject")
def reject_model(request: Request, job_id: str, caller: TenantDep, form: FormDep) -> Response:
    return _decide(request, job_id, caller, form, ModelApprovalStatus.REJECTED)
