"""The operator side of the admin API (SPEC §2, §8): `turnout status|set|rollback|resume|promote`.

``AdminClient`` makes the HTTP calls and turns every failure into an
``AdminError`` carrying the CLI's exit code; the ``format_*`` functions are
pure, so the table and the one-line answers are tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml
from pydantic import ValidationError

from proxy.admin.render import format_change, format_percent, format_rollback_all, format_status
from proxy.config.models import HostPort
from proxy.config.values import check_two_decimals, parse_percent

DEFAULT_ADMIN_URL = "http://127.0.0.1:9901"
TOKEN_ENV = "TURNOUT_ADMIN_TOKEN"
URL_ENV = "TURNOUT_ADMIN_URL"
TIMEOUT_SECONDS = 5.0

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_UNKNOWN_FLAG = 0, 1, 2, 3, 4


class AdminError(Exception):
    """A failed admin call, worded for the operator, with the exit code the CLI returns."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def percent_argument(text: str) -> float:
    """``"25"``, ``"25%"`` or ``"12.5"`` -> a percent in 0..100 with at most two decimals."""
    return check_two_decimals(parse_percent(text))


def admin_target(
    explicit: str | None, config_path: str | None, env: Mapping[str, str]
) -> tuple[str, str]:
    """(admin URL, name of the token's environment variable) for a CLI call.

    The URL: ``--admin``, else ``$TURNOUT_ADMIN_URL``, else ``admin.listen`` of
    ``-c FILE`` (a wildcard host means "this machine"), else the default. The
    config may also rename the token variable (``admin.token_env``).
    """
    token_env, config_url = TOKEN_ENV, None
    if config_path is not None:
        listen, token_env = read_admin_settings(config_path)
        if listen is not None:
            config_url = f"http://{_loopback_for(listen.host)}:{listen.port}"
    url = explicit or env.get(URL_ENV) or config_url or DEFAULT_ADMIN_URL
    return url.rstrip("/"), token_env


def read_admin_settings(config_path: str) -> tuple[HostPort | None, str]:
    """``admin.listen`` (None when the file does not set it) and the token variable.

    Read leniently: `turnout status -c FILE` is what an operator runs right after
    breaking the file, so only these two keys are looked at, and a file that is
    not even YAML falls back to the defaults. An unreadable file or an
    ``admin.listen`` that is no address is an error (guessing would reach the
    wrong server).
    """
    try:
        with open(config_path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise AdminError(f"cannot read admin.listen from {config_path}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    admin = data.get("admin") if isinstance(data, dict) else None
    admin = admin if isinstance(admin, dict) else {}
    token_env = admin.get("token_env")
    token_env = token_env if isinstance(token_env, str) and token_env else TOKEN_ENV
    if admin.get("listen") is None:
        return None, token_env
    try:
        return HostPort.model_validate(admin["listen"]), token_env
    except ValidationError as error:
        reason = error.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise AdminError(f"cannot read admin.listen from {config_path}: {reason}") from None


def _loopback_for(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class AdminClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        token_env: str = TOKEN_ENV,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        # "127.0.0.1:9901" is what admin.listen looks like; accept it as a URL too.
        self.base_url = (base_url if "://" in base_url else f"http://{base_url}").rstrip("/")
        self._token = _usable_token(token, token_env)
        self._token_env = token_env
        self._seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/status")

    async def set_percent(self, flag: str, percent: float) -> dict[str, Any]:
        body = {"percent": percent}
        return await self._call("POST", _flag_path(flag, "percent"), body, flag=flag)

    async def rollback(self, flag: str) -> dict[str, Any]:
        return await self._call("POST", _flag_path(flag, "rollback"), flag=flag)

    async def resume(self, flag: str) -> dict[str, Any]:
        return await self._call("POST", _flag_path(flag, "resume"), flag=flag)

    async def promote(self, flag: str) -> dict[str, Any]:
        return await self._call("POST", _flag_path(flag, "promote"), flag=flag)

    async def rollback_all(self) -> dict[str, Any]:
        return await self._call("POST", "/rollback")

    async def _call(
        self, method: str, path: str, body: Any = None, *, flag: str | None = None
    ) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(method, url, json=body, headers=headers) as response,
            ):
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise AdminError(
                f"cannot reach the admin API at {self.base_url}: {_describe(exc, self._seconds)}",
                EXIT_UNREACHABLE,
            ) from None
        return self._answer(method, path, status, raw, flag)

    def _answer(
        self, method: str, path: str, status: int, raw: bytes, flag: str | None
    ) -> dict[str, Any]:
        document = _json_or_none(raw)
        message = _error_message(document, raw, status)
        if _error_code(document) == "no_admin_token":  # the server's token, not ours
            raise AdminError(f"refused: {message}", EXIT_REFUSED)
        if status in (401, 403):
            env = self._token_env
            hint = f"is {env} set?" if self._token is None else f"is {env} the right token?"
            raise AdminError(f"refused: {message} ({hint})", EXIT_REFUSED)
        if status == 404 and flag is not None:
            raise AdminError(f"unknown flag {flag}", EXIT_UNKNOWN_FLAG)
        if status == 409:
            raise AdminError(f"refused: {message}")
        if status >= 300:
            raise AdminError(f"{method} {path} failed with HTTP {status}: {message}")
        if not isinstance(document, dict):
            raise AdminError(f"{method} {path}: the admin API answered something else than JSON")
        return document


def _usable_token(token: str | None, token_env: str) -> str | None:
    """The token as it can go in ``Authorization: Bearer``; None when there is none.

    Surrounding whitespace is dropped: a secret read from a file often ends in a
    newline, and the admin API strips the token it is given anyway. A control
    character inside cannot be sent in a header at all; saying so beats the
    HTTP library's refusal, which would read as an unreachable admin API.
    """
    token = (token or "").strip()
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in token):
        raise AdminError(
            f"{token_env} holds a control character, which cannot be sent as a bearer token",
            EXIT_REFUSED,
        )
    return token or None


def _flag_path(flag: str, action: str) -> str:
    """``/flags/{flag}/{action}``, refusing a name that is no path segment of its own.

    Quoting keeps ``/`` and ``%`` inside the segment, but an empty name, ``.`` and
    ``..`` are resolved away by the URL: ``/flags/../rollback`` is ``/rollback``,
    which rolls back every flag. No flag can have such a name (the config refuses
    it), so the call is not made.
    """
    if flag in ("", ".", ".."):
        raise AdminError(f"unknown flag {flag!r}: not a flag name", EXIT_UNKNOWN_FLAG)
    return f"/flags/{quote(flag, safe='')}/{action}"


def _json_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _error_code(document: Any) -> str | None:
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return str(document["error"].get("code"))
    return None


def _error_message(document: Any, raw: bytes, status: int) -> str:
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return str(document["error"].get("message") or document["error"].get("code"))
    text = raw.decode("utf-8", "replace").strip()
    return text[:200] or f"HTTP {status}"


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"not a valid URL ({exc})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused (is turnout serve running with this admin.listen?)"
        return exc.os_error.strerror or str(exc.os_error)
    return str(exc) or type(exc).__name__


async def run_admin_command(
    client: AdminClient, command: str, flag: str | None = None, percent: float | None = None
) -> str:
    """One CLI command (``status``, ``set``, ``rollback``, ``resume``, ``promote``) -> the
    text to print.

    ``rollback`` without a flag is ``rollback --all``. Raises ``AdminError``.
    """
    if command == "status":
        return format_status(await client.status())
    if command == "set" and flag is not None and percent is not None:
        return format_change(await client.set_percent(flag, percent))
    if command == "rollback":
        if flag is None:
            return format_rollback_all(await client.rollback_all())
        return format_change(await client.rollback(flag), "rolled back")
    if command == "resume" and flag is not None:
        answer = await client.resume(flag)
        if answer.get("changed") is False:
            now = format_percent(answer.get("after"))
            return f"{flag}: no runtime override, nothing to resume ({now})\n"
        return format_change(answer, "override cleared")
    if command == "promote" and flag is not None:
        return format_change(await client.promote(flag), "promoted")
    raise AdminError(f"unknown admin command {command!r}")
