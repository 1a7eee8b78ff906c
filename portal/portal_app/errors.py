"""Errors a request can end in, and how each reaches the caller.

Every error is a page or a JSON body (chosen by the ``Accept`` header) with a status code and a
sentence that says what is wrong. AWS errors are mapped to 4xx/5xx codes by their error code;
tracebacks go to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from training_common import CatalogError, PageTokenError

from .auth import AuthError
from .csrf import CsrfError

log = logging.getLogger("portal.errors")


class PortalError(Exception):
    """An error with a status code and a message for the user."""

    status_code = 400

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequest(PortalError):
    status_code = 400


class Forbidden(PortalError):
    status_code = 403


class NotFound(PortalError):
    status_code = 404


class Conflict(PortalError):
    status_code = 409


class Unavailable(PortalError):
    """A feature this environment has not set up (its settings are unset)."""

    status_code = 503


_CLIENT_ERROR_STATUS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "AWS denied access to this resource."),
    "AccessDeniedException": (403, "AWS denied access to this resource."),
    "UnauthorizedOperation": (403, "AWS denied access to this resource."),
    "NoSuchKey": (404, "The object does not exist."),
    "NotFound": (404, "The resource does not exist."),
    "404": (404, "The resource does not exist."),
    "ResourceNotFound": (404, "The resource does not exist."),
    "ResourceNotFoundException": (404, "The resource does not exist."),
    "UserNotFoundException": (404, "The user does not exist."),
    "ValidationException": (400, "AWS rejected the request as invalid."),
    "InvalidParameterException": (400, "AWS rejected a parameter of the request."),
    "InvalidParameterValue": (400, "AWS rejected a parameter of the request."),
    "UsernameExistsException": (409, "A user with this email address already exists."),
    "ConditionalCheckFailedException": (409, "The record changed or already exists."),
    "ResourceInUse": (409, "The resource is busy; try again."),
    # SageMaker's answer when another request is changing the same entity (UpdateModelPackage).
    "ConflictException": (409, "Another request is changing this resource; try again."),
    "ThrottlingException": (503, "AWS is throttling requests; try again in a moment."),
    "Throttling": (503, "AWS is throttling requests; try again in a moment."),
    "ProvisionedThroughputExceededException": (503, "The tables are busy; try again."),
    "RequestLimitExceeded": (503, "AWS is throttling requests; try again in a moment."),
    "SlowDown": (503, "S3 is throttling requests; try again in a moment."),
    "ExpiredToken": (503, "Temporary credentials expired; try again."),
    "ExpiredTokenException": (503, "Temporary credentials expired; try again."),
}


def wants_json(request: Request) -> bool:
    """True when the caller prefers JSON to HTML."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(
    request: Request, status: int, message: str, details: list[str] | None = None
) -> Response:
    """The error as JSON or as the error page."""
    details = details or []
    if wants_json(request):
        body: dict[str, Any] = {"error": message, "status": status}
        if details:
            body["details"] = details
        return JSONResponse(body, status_code=status)
    templates = getattr(request.app.state, "templates", None)
    if templates is None:  # pragma: no cover - only if the app failed half-way through start-up
        return HTMLResponse(f"<h1>{status}</h1><p>{message}</p>", status_code=status)
    page: Response = templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "details": details, "identity": None},
        status_code=status,
    )
    return page


async def _portal(request: Request, exc: PortalError) -> Response:
    return error_response(request, exc.status_code, exc.message, exc.details)


async def _auth(request: Request, exc: AuthError) -> Response:
    log.warning("identity rejected", extra={"reason": str(exc), "path": request.url.path})
    sign_in_url = getattr(getattr(request.app.state, "portal", None), "sign_in_url", None)
    if sign_in_url and not wants_json(request):
        return RedirectResponse(sign_in_url, status_code=303)
    return error_response(request, 401, f"Not signed in: {exc}.")


async def _csrf(request: Request, exc: CsrfError) -> Response:
    return error_response(request, 403, f"Request refused: {exc}.")


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    details = [
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    return error_response(request, 400, "The request is invalid.", details)


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else "The request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = "There is no page at this address."
    if exc.status_code == 405:
        message = "This address does not accept that method."
    return error_response(request, exc.status_code, message)


async def _catalog(request: Request, exc: CatalogError) -> Response:
    log.error("invalid catalog document", extra={"error": str(exc)})
    return error_response(
        request,
        502,
        "The algorithm catalog holds an invalid entry; an administrator must fix it.",
    )


async def _page_token(request: Request, exc: PageTokenError) -> Response:
    # A stale, edited or another tenant's ``next`` link: the listing never queries with it.
    reason = str(exc) or "the page token is not valid"
    return error_response(
        request, 400, f"{reason[0].upper()}{reason[1:]}; open the list again from its first page."
    )


async def _client_error(request: Request, exc: ClientError) -> Response:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status, message = _CLIENT_ERROR_STATUS.get(code, (502, "An AWS service call failed."))
    log.warning(
        "aws client error",
        extra={"code": code, "operation": exc.operation_name, "status": status},
    )
    return error_response(request, status, message, [f"{exc.operation_name}: {code}"])


async def _botocore(request: Request, exc: BotoCoreError) -> Response:
    log.error("aws connection error", extra={"error": str(exc)})
    return error_response(request, 503, "An AWS service could not be reached; try again.")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return error_response(request, 500, "Something went wrong on our side; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into pages or JSON."""
    app.add_exception_handler(PortalError, _portal)  # type: ignore[arg-type]
    app.add_exception_handler(AuthError, _auth)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfError, _csrf)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(CatalogError, _catalog)  # type: ignore[arg-type]
    app.add_exception_handler(PageTokenError, _page_token)  # type: ignore[arg-type]
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(BotoCoreError, _botocore)
    app.add_exception_handler(Exception, _unexpected)
