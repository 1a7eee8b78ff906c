"""Tenant pages for continuous retraining: policies, their runs, and a deployment's feedback.

As on every tenant page, the tenant comes from the verified identity (``TenantDep``) only; no
path, query or form value names it. Policies are written and their requests queued with the
tenant's assumed-role clients; the runs are read with them; feedback is exported from the
deployment's data capture and uploaded below the tenant's prefix with them too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from training_common import RetrainingRun, RunDecision, TuningSpec

from ..errors import BadRequest, wants_json
from ..services import deployments, feedback, retraining
from ..web import FormDep, Portal, PortalDep, TenantCaller, TenantDep, render

router = APIRouter()

NOTICES = {
    "policy-created": (
        "The policy was saved; its schedule is being created (the state below changes in a moment)."
    ),
    "policy-updated": "The policy was changed; its schedule is being updated.",
    "policy-paused": "The policy was paused: no run starts until you resume it.",
    "policy-resumed": "The policy was resumed: its schedule runs again.",
    "policy-deleting": "The policy is being deleted; its history stays.",
    "labelled-uploaded": "The labelled file was uploaded; policies with feedback train on it.",
}


def _run_json(run: RetrainingRun) -> dict[str, Any]:
    return run.model_dump(mode="json")


def _next(request: Request) -> str | None:
    return request.query_params.get("next") or None


@router.get("/retraining", name="retraining_page")
def retraining_page(request: Request, caller: TenantDep) -> Response:
    token = _next(request)
    page = retraining.list_page(caller.aws, token)
    if wants_json(request):
        return JSONResponse(
            {
                "items": [retraining.policy_json(p) for p in page.items],
                "next": page.next_token,
            }
        )
    return render(
        request,
        "retraining.html",
        {"policies": page.items, "next_token": page.next_token, "first_page": token is None},
    )


def _policy_form(
    request: Request,
    caller: TenantCaller,
    *,
    src: retraining.Source | None,
    values: dict[str, str],
    policy_id: str | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    job = src.job if src else None
    tuning: TuningSpec | None
    instance: tuple[str, int, int] | None
    if policy_id is not None:
        policy = retraining.get(caller.aws, policy_id)
        tuning, algorithm = policy.tuning, policy.algorithm_id
        instance = (policy.instance_type, policy.instance_count, policy.max_runtime_seconds)
        hyperparameters = policy.hyperparameters
    else:
        tuning = job.tuning if job else None
        algorithm = job.algorithm_id if job else ""
        instance = (job.instance_type, job.instance_count, job.max_runtime_seconds) if job else None
        hyperparameters = job.hyperparameters if job else {}
    return render(
        request,
        "retraining_form.html",
        {
            "src": src,
            "editing": policy_id,
            "values": values,
            "errors": errors or [],
            "tuning": tuning,
            "algorithm_id": algorithm,
            "instance": instance,
            "hyperparameters": hyperparameters,
            "promotion_rule": retraining.PROMOTION_RULE,
            "labelled_prefix": feedback.labelled_prefix(
                caller.tenant_id, values.get("deployment_id", "")
            ),
        },
        status_code=status_code,
    )


@router.get("/deployments/{deployment_id}/retraining/new")
def new_policy(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep
) -> Response:
    src = retraining.source(caller.aws, deployment_id)
    retraining.policies(caller.aws)  # 503 before a form that can't be saved
    values = retraining.form_defaults(caller.aws, portal.settings, src)
    if wants_json(request):
        return JSONResponse({"defaults": values, "problem": src.problem})
    return _policy_form(request, caller, src=src, values=values)


@router.post("/retraining")
def create_policy(
    request: Request, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    queue = retraining.queue_url(portal.settings)
    try:
        policy = retraining.new_policy(
            caller.aws, portal.settings, portal.aws.catalog, form, caller.identity.display
        )
        policy = retraining.create(caller.aws, queue, policy)
    except BadRequest as error:
        if wants_json(request):
            raise
        src = None
        deployment_id = form.get("deployment_id", "")
        if deployment_id:
            src = retraining.source(caller.aws, deployment_id)
        return _policy_form(
            request,
            caller,
            src=src,
            values=form,
            errors=[error.message, *error.details],
            status_code=400,
        )
    if wants_json(request):
        return JSONResponse(retraining.policy_json(policy), status_code=202)
    return RedirectResponse(
        f"/retraining/{policy.policy_id}?notice=policy-created", status_code=303
    )


@router.get("/retraining/{policy_id}")
def policy_page(request: Request, policy_id: str, caller: TenantDep) -> Response:
    policy = retraining.get(caller.aws, policy_id)
    token = _next(request)
    runs = retraining.runs_page(caller.aws, policy, token)
    if wants_json(request):
        return JSONResponse(
            {
                **retraining.policy_json(policy),
                "runs": [_run_json(r) for r in runs.items],
                "next": runs.next_token,
            }
        )
    return render(
        request,
        "retraining_policy.html",
        {
            "policy": policy,
            "runs": runs.items,
            "next_token": runs.next_token,
            "first_page": token is None,
            "model_decisions": retraining.MODEL_DECISIONS,
            "running": RunDecision.RUNNING,
            "promotion_rule": retraining.PROMOTION_RULE,
            "live": retraining.is_live(policy, runs.items),
            "notice": NOTICES.get(request.query_params.get("notice", "")),
        },
    )


@router.get("/retraining/{policy_id}/edit")
def edit_form(request: Request, policy_id: str, caller: TenantDep) -> Response:
    policy = retraining.get(caller.aws, policy_id)
    if wants_json(request):
        return JSONResponse({"values": retraining.policy_values(policy)})
    return _policy_form(
        request, caller, src=None, values=retraining.policy_values(policy), policy_id=policy_id
    )


@router.post("/retraining/{policy_id}/edit")
def edit_policy(
    request: Request, policy_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    try:
        policy = retraining.edit(
            caller.aws,
            portal.settings,
            portal.aws.catalog,
            policy_id,
            form,
            caller.identity.display,
        )
    except BadRequest as error:
        if wants_json(request):
            raise
        current = retraining.get(caller.aws, policy_id)
        values = {**form, "deployment_id": current.deployment_id, "policy_id": policy_id}
        return _policy_form(
            request,
            caller,
            src=None,
            values=values,
            policy_id=policy_id,
            errors=[error.message, *error.details],
            status_code=400,
        )
    return _answer(request, policy, "policy-updated")


def _answer(request: Request, policy: Any, notice: str) -> Response:
    if wants_json(request):
        return JSONResponse(retraining.policy_json(policy), status_code=202)
    return RedirectResponse(f"/retraining/{policy.policy_id}?notice={notice}", status_code=303)


@router.post("/retraining/{policy_id}/pause")
def pause_policy(
    request: Request, policy_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    queue = retraining.queue_url(portal.settings)
    policy = retraining.pause(caller.aws, queue, policy_id, caller.identity.display)
    return _answer(request, policy, "policy-paused")


@router.post("/retraining/{policy_id}/resume")
def resume_policy(
    request: Request, policy_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    queue = retraining.queue_url(portal.settings)
    policy = retraining.resume(caller.aws, queue, policy_id, caller.identity.display)
    return _answer(request, policy, "policy-resumed")


@router.post("/retraining/{policy_id}/delete")
def delete_policy(
    request: Request, policy_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    queue = retraining.queue_url(portal.settings)
    policy = retraining.delete(caller.aws, queue, policy_id, caller.identity.display)
    return _answer(request, policy, "policy-deleting")


# --- feedback ---------------------------------------------------------------------------------


def _feedback_page(
    request: Request,
    caller: TenantCaller,
    portal: Portal,
    deployment_id: str,
    *,
    exported: feedback.Export | None = None,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    deployment = deployments.get(caller.aws, deployment_id)
    files = feedback.listing(caller.aws, portal.settings.data_bucket, deployment)
    return render(
        request,
        "feedback.html",
        {
            "deployment": deployment,
            "problem": feedback.capture_problem(deployment),
            "exports": files.exports,
            "labelled": files.labelled,
            "labelled_prefix": feedback.labelled_prefix(caller.tenant_id, deployment_id),
            "exported": exported,
            "values": values or {},
            "errors": errors or [],
            "max_rows": feedback.MAX_EXPORT_ROWS,
            "max_files": feedback.MAX_EXPORT_FILES,
            "max_days": feedback.MAX_WINDOW.days,
            "max_labelled_mb": feedback.MAX_LABELLED_BYTES // (1024 * 1024),
            "notice": NOTICES.get(request.query_params.get("notice", "")),
        },
        status_code=status_code,
    )


def _file_json(item: feedback.FeedbackFile) -> dict[str, Any]:
    return {
        "key": item.key,
        "name": item.name,
        "size": item.size,
        "modified": item.modified.isoformat(),
    }


def _export_json(result: feedback.Export) -> dict[str, Any]:
    return {
        "key": result.key,
        "rows": result.rows,
        "files": result.files,
        "truncated": result.truncated,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
    }


@router.get("/deployments/{deployment_id}/feedback")
def feedback_page(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep
) -> Response:
    if wants_json(request):
        deployment = deployments.get(caller.aws, deployment_id)
        files = feedback.listing(caller.aws, portal.settings.data_bucket, deployment)
        return JSONResponse(
            {
                "deployment_id": deployment_id,
                "problem": feedback.capture_problem(deployment),
                "exports": [_file_json(f) for f in files.exports],
                "labelled": [_file_json(f) for f in files.labelled],
            }
        )
    return _feedback_page(request, caller, portal, deployment_id)


@router.get("/deployments/{deployment_id}/feedback/download")
def download_feedback(
    deployment_id: str, file: str, caller: TenantDep, portal: PortalDep
) -> Response:
    """An export or labelled file of the deployment, by its name below the deployment's
    feedback prefix (``?file=<start>-<end>/inputs.csv`` or ``?file=labelled/<name>``)."""
    deployment = deployments.get(caller.aws, deployment_id)
    url = feedback.download_url(
        caller.aws,
        portal.settings.data_bucket,
        deployment,
        file,
        portal.settings.presigned_url_seconds,
    )
    return RedirectResponse(url, status_code=303)


@router.post("/deployments/{deployment_id}/feedback/export")
def export_feedback(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    deployment = deployments.get(caller.aws, deployment_id)
    try:
        start, end = feedback.window_from_form(form)
        result = feedback.export(caller.aws, portal.settings.data_bucket, deployment, start, end)
    except BadRequest as error:
        if wants_json(request):
            raise
        return _feedback_page(
            request,
            caller,
            portal,
            deployment_id,
            values=form,
            errors=[error.message],
            status_code=400,
        )
    if wants_json(request):
        return JSONResponse(_export_json(result), status_code=201 if result.key else 200)
    return _feedback_page(
        request,
        caller,
        portal,
        deployment_id,
        exported=result,
        values=form,
        status_code=201 if result.key else 200,
    )


@router.post("/deployments/{deployment_id}/feedback/labelled")
async def upload_labelled(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    """A labelled CSV (multipart ``file``), after the same CSRF check as every form."""
    submitted = (await request.form()).get("file")
    deployment = await run_in_threadpool(deployments.get, caller.aws, deployment_id)
    if not isinstance(submitted, UploadFile):
        raise BadRequest("Choose a labelled CSV file to upload.")
    body = await submitted.read(feedback.MAX_LABELLED_BYTES + 1)
    key = await run_in_threadpool(
        feedback.upload_labelled,
        caller.aws,
        portal.settings.data_bucket,
        deployment,
        submitted.filename or "",
        body,
    )
    if wants_json(request):
        return JSONResponse({"key": key}, status_code=201)
    return RedirectResponse(
        f"/deployments/{deployment_id}/feedback?notice=labelled-uploaded", status_code=303
    )
