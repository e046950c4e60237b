"""The original stack, as a Python team writes the seed's logout: FastAPI,
slowapi keyed by client address, a security-header middleware, three
delete_cookie calls. The benchmark's reference for "the Python app".

    uvicorn app:app --host 127.0.0.1 --port 8200 --workers 1 --no-access-log
"""
import os

from fastapi import FastAPI, Request, Response
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

RATE_LIMIT_AUTH = os.environ.get("RATE_LIMIT_AUTH", "60/minute")
SESSION_COOKIE_NAME = os.environ.get("SESSION_COOKIE_NAME", "chronos_session")
REFRESH_COOKIE_NAME = os.environ.get("REFRESH_COOKIE_NAME", "chronos_refresh")
CSRF_COOKIE_NAME = os.environ.get("CSRF_COOKIE_NAME", "chronos_csrf")
COOKIE_SECURE = os.environ.get("COOKIE_SECURE", "false").lower() == "true"
COOKIE_SAMESITE = os.environ.get("COOKIE_SAMESITE", "lax")
COOKIE_DOMAIN = os.environ.get("COOKIE_DOMAIN") or None

limiter = Limiter(key_func=get_remote_address)
app = FastAPI()
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)


@app.middleware("http")
async def security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    response.headers["Permissions-Policy"] = "geolocation=(), microphone=(), camera=()"
    if request.url.path.startswith("/auth/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@app.post("/auth/logout")
@limiter.limit(RATE_LIMIT_AUTH)
async def logout(request: Request, response: Response):
    for name, httponly in (
        (SESSION_COOKIE_NAME, True),
        (REFRESH_COOKIE_NAME, True),
        (CSRF_COOKIE_NAME, False),
    ):
        response.delete_cookie(
            name,
            path="/",
            domain=COOKIE_DOMAIN,
            secure=COOKIE_SECURE,
            httponly=httponly,
            samesite=COOKIE_SAMESITE,
        )
    return {"message": "Logged out"}
