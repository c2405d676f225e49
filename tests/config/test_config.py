"""The configuration layer: units, YAML short forms, and FILE:LINE: path: message errors."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from proxy.config.loader import (
    ConfigError,
    ConfigIssue,
    config_hash,
    load_config,
    parse_config,
    summarize,
)
from proxy.config.models import (
    BackendConfig,
    Config,
    FlagConfig,
    HostPort,
    RouteConfig,
    StickySource,
)
from proxy.config.values import parse_duration, parse_percent, parse_size

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"

BACKENDS = """\
backends:
  legacy: {url: "http://127.0.0.1:8000"}
  new: {url: "http://127.0.0.1:3000"}
"""


def yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def errors(text: str) -> list[str]:
    """Every issue of ``text`` (as c.yaml), one string each; fails if the text is valid."""
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml(text), "c.yaml")
    lines = [str(issue) for issue in caught.value.issues]
    assert str(caught.value) == "\n".join(lines)
    return lines


# --- units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (5, 5.0),
        (0.25, 0.25),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("2", 2.0),
        (" 10s ", 10.0),
    ],
)
def test_durations(given: object, seconds: float) -> None:
    assert parse_duration(given) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("given", "percent"), [(10, 10.0), (2.5, 2.5), ("1%", 1.0), ("12.5 %", 12.5), ("0", 0.0)]
)
def test_percents(given: object, percent: float) -> None:
    assert parse_percent(given) == percent


@pytest.mark.parametrize(
    ("given", "size"),
    [
        (1024, 1024),
        ("512B", 512),
        ("16KiB", 16384),
        ("1MiB", 1048576),
        ("10MB", 10_000_000),
        ("1GiB", 1 << 30),
        ("2KB", 2000),
        ("1.5KiB", 1536),
    ],
)
def test_sizes(given: object, size: int) -> None:
    assert parse_size(given) == size


@pytest.mark.parametrize(
    ("parser", "given", "fragment"),
    [
        (parse_duration, "-1s", "negative"),
        (parse_duration, -3, "negative"),
        (parse_duration, "5 minutes", "expected a duration"),
        (parse_duration, True, "boolean"),
        (parse_duration, float("nan"), "expected a duration"),
        (parse_percent, 101, "between 0 and 100"),
        (parse_percent, "-1%", "between 0 and 100"),
        (parse_percent, "ten", "expected a percentage"),
        (parse_size, "-1KiB", "negative"),
        (parse_size, "10XB", "unknown size unit"),
        (parse_size, "lots", "expected a size"),
        (parse_size, [1], "a list"),
    ],
)
def test_unit_garbage_is_refused(parser: object, given: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parser(given)  # type: ignore[operator]


# --- a valid file --------------------------------------------------------------------------


def test_example_yaml_loads_with_every_value_normalised() -> None:
    config = load_config(EXAMPLE)
    assert config.listen == HostPort(host="0.0.0.0", port=8080)
    assert str(config.admin.listen) == "127.0.0.1:9901"
    assert config.request_timeout == 60.0 and config.drain_timeout == 30.0
    assert config.backends.new.timeouts.idle == 60.0
    assert config.backends.legacy.health.unhealthy_threshold == 2
    assert config.limits.max_header_bytes == 16 * 1024
    assert config.limits.max_body_bytes == 100 * 1024 * 1024
    assert config.force_header == "x-turnout-backend"
    assert config.sticky == [
        StickySource(kind="jwt_claim", name="access_token", claim="sub", jwt_in="cookie"),
        StickySource(kind="jwt_claim", name="authorization", claim="sub", jwt_in="header"),
        StickySource(kind="cookie", name="session_id"),
        StickySource(kind="header", name="x-user-id"),
        StickySource(kind="client_ip"),
    ]
    user = config.flags["user-api"]
    assert user.percent == 10.0
    assert user.targeting.new.tenants == ["internal-qa"]
    assert user.targeting.legacy.users == ["vip-42"]
    assert user.shadow is not None and user.shadow.percent == 20.0
    assert user.shadow.compare.same_status == [(400, 422)]
    assert user.shadow.max_body_bytes == 1024 * 1024
    assert user.fallback is not None
    assert user.fallback.on == ["connect_error", "timeout", "reset", 502, 503, 504]
    canary = user.canary
    assert canary is not None
    assert canary.steps == [1, 5, 25, 50, 100]
    assert (canary.interval, canary.max_p99, canary.max_error_rate) == (300.0, 0.8, 1.0)
    assert canary.max_mismatch_rate == 2.0 and canary.max_error_rate_increase == 0.5
    assert config.flags["account-api"].percent == 0.5
    assert [r.label for r in config.routes] == [
        "/api/public/**",
        "user-avatar",
        "/api/users/**",
        "accounts-beta",
    ]
    assert config.routes[3].header is not None and config.routes[3].header.value == "1"
    assert summarize(config) == (
        "ok: 2 backends, 3 flags, 4 routes, listen 0.0.0.0:8080, admin 127.0.0.1:9901"
    )


def test_defaults_and_short_forms() -> None:
    config = parse_config(
        BACKENDS
        + yaml("""
        listen: ":9000"
        admin: {listen: "[::1]:9901"}
        sticky: [{header: X-User-Id}, {jwt_claim: {header: Authorization}}]
        force_header: X-Force
        flags:
          f: {percent: "12.5%", fallback: {}, shadow: {percent: 1}}
        routes:
          - {path: /a/*/b/**, methods: [get, post], header: X-Beta, flag: f}
    """)
    )
    assert config.listen == HostPort(host="0.0.0.0", port=9000)
    assert config.admin.listen.host == "::1" and str(config.admin.listen) == "[::1]:9901"
    assert config.admin.token_env == "TURNOUT_ADMIN_TOKEN"
    assert config.sticky[0] == StickySource(kind="header", name="x-user-id")
    assert config.sticky[1] == StickySource(
        kind="jwt_claim", name="authorization", claim="sub", jwt_in="header"
    )
    assert config.force_header == "x-force"
    flag = config.flags["f"]
    assert flag.percent == 12.5
    assert flag.fallback is not None and flag.fallback.on == [
        "connect_error",
        "timeout",
        502,
        503,
        504,
    ]
    assert flag.fallback.methods == ["GET", "HEAD", "OPTIONS"]
    assert flag.fallback.budget_percent == 20.0
    assert flag.shadow is not None and flag.shadow.methods == ["GET", "HEAD"]
    assert flag.shadow.max_in_flight == 64
    route = config.routes[0]
    assert route.methods == ["GET", "POST"]
    assert route.header is not None and (route.header.name, route.header.value) == ("x-beta", None)
    assert route.label == "/a/*/b/**"
    assert config.sticky_cookie is True and config.access_log is False
    assert config.limits.max_line_bytes == 8192 and config.limits.client_idle_timeout == 60.0
    assert config.request_timeout == 60.0
    legacy = config.backends.legacy
    assert legacy.timeouts.connect == 1.0 and legacy.health is None  # active checks opt-in
    assert legacy.outlier_detection.consecutive_failures == 5
    assert legacy.max_idle_connections == 512


def test_minimal_config_has_client_ip_sticky_and_no_flags() -> None:
    config = parse_config(BACKENDS)
    assert config.sticky == [StickySource(kind="client_ip")]
    assert config.flags == {} and config.routes == []
    assert summarize(config) == (
        "ok: 2 backends, 0 flags, 0 routes, listen 0.0.0.0:8080, admin 127.0.0.1:9901"
    )


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "stored"),
    [
        ("http://legacy:8000/", "http", "legacy", 8000, "http://legacy:8000"),
        ("https://api.example.com", "https", "api.example.com", 443, "https://api.example.com"),
        ("http://[::1]", "http", "::1", 80, "http://[::1]"),
    ],
)
def test_backend_url_parts(url: str, scheme: str, host: str, port: int, stored: str) -> None:
    backend = BackendConfig(url=url)
    assert (backend.url, backend.scheme, backend.host, backend.port) == (stored, scheme, host, port)


def test_models_are_frozen_and_round_trip() -> None:
    config = load_config(EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        config.flags["user-api"].percent = 50  # type: ignore[misc]
    assert Config.model_validate(config.model_dump()) == config


def test_yaml_merge_keys_and_on_key_are_understood() -> None:
    config = parse_config(
        yaml("""
        backends:
          legacy: {url: "http://a", timeouts: &t {connect: 2s, response: 10s}}
          new:
            url: "http://b"
            timeouts: {<<: *t, response: 3s}
        flags:
          f: {fallback: {on: [reset]}}
    """)
    )
    assert config.backends.new.timeouts.connect == 2.0
    assert config.backends.new.timeouts.response == 3.0
    assert config.flags["f"].fallback is not None and config.flags["f"].fallback.on == ["reset"]


def test_fallback_accepts_what_new_has_not_built_yet() -> None:
    """404, 405 and 501 (and quoted forms) besides 5xx and the transport failures."""
    config = parse_config(
        yaml("""
        backends: {legacy: {url: "http://a"}, new: {url: "http://b"}}
        flags:
          f: {fallback: {on: [connect_error, 404, "405", 501, 503]}}
    """)
    )
    fallback = config.flags["f"].fallback
    assert fallback is not None and fallback.on == ["connect_error", 404, 405, 501, 503]


def test_config_hash_is_sha256_of_the_text() -> None:
    assert config_hash("a: 1\n") == hashlib.sha256(b"a: 1\n").hexdigest()
    assert config_hash("a: 1\n") != config_hash("a: 2\n")


def test_python_built_config_checks_references() -> None:
    backends = {"legacy": {"url": "http://a"}, "new": {"url": "http://b"}}
    with pytest.raises(ValueError, match="unknown flag 'nope'"):
        Config.model_validate({"backends": backends, "routes": [{"path": "/", "flag": "nope"}]})
    ok = Config.model_validate(
        {"backends": backends, "flags": {"f": {}}, "routes": [{"path": "/", "flag": "f"}]}
    )
    assert ok.route_flag(ok.routes[0]) == FlagConfig()
    assert RouteConfig(path="/x", flag="f").label == "/x"


# --- errors: FILE:LINE: key.path: message --------------------------------------------------


def test_issue_format() -> None:
    issue = ConfigIssue("c.yaml", 7, "flags.f.percent", "boom")
    assert str(issue) == "c.yaml:7: flags.f.percent: boom"
    assert str(ConfigError([issue, ConfigIssue("c.yaml", 2, "listen", "bad")])) == (
        "c.yaml:2: listen: bad\nc.yaml:7: flags.f.percent: boom"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown key, with a suggestion
        (
            BACKENDS + "listn: :80\n",
            "c.yaml:4: listn: unknown key 'listn' (did you mean 'listen'?)",
        ),
        # nested unknown key, in a flow mapping
        (
            "backends:\n  legacy: {url: 'http://a', timeout: {connect: 1s}}\n  new: {url: 'http://b'}\n",
            "c.yaml:2: backends.legacy.timeout: unknown key 'timeout' (did you mean 'timeouts'?)",
        ),
        # missing required key -> its parent's line
        (
            "listen: :80\nbackends:\n  legacy: {url: 'http://a'}\n",
            "c.yaml:2: backends.new: required key missing",
        ),
        ("listen: :80\n", "c.yaml:1: backends: required key missing"),
        # wrong types
        (
            BACKENDS + "sticky_cookie: maybe\n",
            "c.yaml:4: sticky_cookie: expected true or false, got 'maybe'",
        ),
        (BACKENDS + "flags: [a, b]\n", "c.yaml:4: flags: expected a mapping, got a list"),
        (
            BACKENDS + "flags:\n  f:\n    targeting:\n",
            "c.yaml:6: flags.f.targeting: expected a mapping, got nothing (the value is empty)",
        ),
        (
            BACKENDS + "force_header: off\n",
            "c.yaml:4: force_header: expected a string, got off "
            '(read as a boolean by YAML); write it in quotes: "off"',
        ),
        # durations, percents, sizes
        (
            "backends:\n  legacy:\n    url: http://a\n    timeouts:\n      connect: 1 second\n"
            "  new: {url: 'http://b'}\n",
            "c.yaml:5: backends.legacy.timeouts.connect: expected a duration such as 250ms, 1.5s, "
            "5m or 1h, got '1 second'",
        ),
        (
            BACKENDS + "flags:\n  user-api:\n    percent: 150\n",
            "c.yaml:6: flags.user-api.percent: must be between 0 and 100, got 150",
        ),
        (
            BACKENDS + "flags:\n  user-api:\n    percent: 12.345\n",
            "c.yaml:6: flags.user-api.percent: at most two decimals are allowed "
            "(one bucket is 0.01%), got 12.345",
        ),
        (
            BACKENDS + "limits:\n  max_body_bytes: -1MiB\n",
            "c.yaml:5: limits.max_body_bytes: must not be negative, got '-1MiB'",
        ),
        # routes
        (
            BACKENDS
            + "flags: {f: {}}\nroutes:\n  - {path: /a, flag: f}\n  - {path: /b, flag: g}\n",
            "c.yaml:7: routes[1].flag: unknown flag 'g' (defined flags: f)",
        ),
        (
            BACKENDS + "flags: {f: {}}\nroutes:\n  - {path: /a, flag: f, name: x}\n"
            "  - {path: /b, flag: f, name: x}\n",
            "c.yaml:7: routes[1].name: duplicate route name 'x' (also routes[0])",
        ),
        (
            BACKENDS + "flags: {f: {}}\nroutes:\n  - {path: /a/**x, flag: f}\n",
            "c.yaml:6: routes[0].path: '*' and '**' must be a whole path segment, got '**x' "
            "in '/a/**x'",
        ),
        (
            BACKENDS + "flags: {f: {}}\nroutes:\n  - path: /a\n    methods: [GET, 'PO ST']\n"
            "    flag: f\n",
            "c.yaml:7: routes[0].methods[1]: 'PO ST' is not a valid HTTP method",
        ),
        (
            BACKENDS + "flags: {f: {}}\nroutes:\n  - path: /a\n\n    name: n\n",
            "c.yaml:6: routes[0].flag: required key missing",
        ),
        # sticky forms
        (
            BACKENDS + "sticky:\n  - client_ip\n  - cookie\n",
            "c.yaml:6: sticky[1]: 'cookie' needs a value, e.g. `- cookie: session_id`",
        ),
        (
            BACKENDS + "sticky:\n  - jwt_claim: {claim: sub}\n",
            "c.yaml:5: sticky[0]: jwt_claim: give exactly one of `cookie: NAME` or `header: NAME`",
        ),
        # targeting on both sides
        (
            BACKENDS + "flags:\n  f:\n    targeting:\n      new: {users: [u1]}\n"
            "      legacy: {users: [u1]}\n",
            "c.yaml:6: flags.f.targeting: user 'u1' is listed under both new.users and "
            "legacy.users",
        ),
        # backends
        (
            "backends:\n  legacy: {url: 'http://a/api'}\n  new: {url: 'http://b'}\n",
            "c.yaml:2: backends.legacy.url: must be scheme://host[:port] without a path, query or "
            "fragment, got 'http://a/api'",
        ),
        (
            "backends:\n  legacy: {url: 'http://a'}\n  new:\n    url: tcp://b\n",
            "c.yaml:4: backends.new.url: must start with http:// or https://, got 'tcp://b'",
        ),
        # fallback triggers, normalize literals, canary steps
        (
            BACKENDS + "flags:\n  f:\n    fallback: {on: [timeout, 404, 403]}\n",
            "c.yaml:6: flags.f.fallback.on[2]: status 403 cannot trigger a fallback: "
            "expected a 5xx code (500..599), 404 or 405",
        ),
        (
            BACKENDS + "flags:\n  f:\n    shadow:\n      percent: 1\n      compare:\n"
            "        normalize: [uuids]\n",
            "c.yaml:9: flags.f.shadow.compare.normalize[0]: must be 'uuid', 'iso_timestamp', "
            "'unordered_lists', 'float_tolerance' or 'case_insensitive_keys', got 'uuids'",
        ),
        (
            BACKENDS + "flags:\n  f:\n    canary:\n      steps: [1, 5, 5]\n",
            "c.yaml:7: flags.f.canary.steps: steps must increase strictly, got 5 then 5",
        ),
        (
            BACKENDS + "flags:\n  'my flag': {}\n",
            "c.yaml:5: flags['my flag']: 'my flag' is not a valid flag name (letters, digits, '_', "
            "'.', '-'; no leading punctuation)",
        ),
    ],
)
def test_each_error_names_file_line_and_path(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_duplicate_keys_are_errors_at_the_second_occurrence() -> None:
    assert errors(
        BACKENDS
        + yaml("""
        flags:
          user-api: {percent: 1}
          other: {}
          user-api: {percent: 2}
        routes: []
        routes: []
    """)
    ) == [
        "c.yaml:7: flags.user-api: duplicate key 'user-api' (first on line 5)",
        "c.yaml:9: routes: duplicate key 'routes' (first on line 8)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "c.yaml:1: (root): file is empty; expected a mapping with at least `backends`"),
        (
            "# nothing\n",
            "c.yaml:1: (root): file is empty; expected a mapping with at least `backends`",
        ),
        ("- a\n- b\n", "c.yaml:1: (root): the top level must be a mapping of settings, got a list"),
        (
            "listen: :80\nbackends:\n  legacy: {url: [\n",
            "c.yaml:4: (root): YAML syntax error: did not find expected node content "
            "(while parsing a flow node on line 4)",
        ),
        (
            "a: 1\n b: 2\n",
            "c.yaml:2: (root): YAML syntax error: mapping values are not allowed in this context",
        ),
        (
            "x: !!python/object/apply:os.system [ls]\n",
            "c.yaml:1: x: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
        ("a: &a [*a]\n", "c.yaml:1: a[0]: recursive alias: a value contains itself"),
    ],
)
def test_file_level_errors(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    (issue,) = errors("\n".join(lines) + "\n")
    assert "document too large" in issue


def test_all_errors_of_a_file_are_reported_at_once_in_line_order() -> None:
    text = """\
        listen: 8080
        admin: {listen: "localhost:99999", tokn_env: X}
        backends:
          legacy: {url: "http://a", timeouts: {connect: 0}}
          legacy: {url: "http://a"}
        sticky: [client_ip, {cookies: sid}]
        flags:
          f:
            percent: 10.125
            canary: {steps: [5, 1], max_error_rate: 120%}
        routes:
          - {path: api, flag: g}
    """
    assert errors(text) == [
        "c.yaml:1: listen: expected HOST:PORT such as 0.0.0.0:8080, got 8080",
        "c.yaml:2: admin.listen: port must be a number from 0 to 65535, got '99999'",
        "c.yaml:2: admin.tokn_env: unknown key 'tokn_env' (did you mean 'token_env'?)",
        "c.yaml:3: backends.new: required key missing",
        "c.yaml:4: backends.legacy.timeouts.connect: must be greater than 0",
        "c.yaml:5: backends.legacy: duplicate key 'legacy' (first on line 4)",
        "c.yaml:6: sticky[1]: unknown sticky source 'cookies'; expected one of jwt_claim, "
        "cookie, header, client_ip",
        "c.yaml:9: flags.f.percent: at most two decimals are allowed (one bucket is 0.01%), "
        "got 10.125",
        "c.yaml:10: flags.f.canary.steps: steps must increase strictly, got 5 then 1",
        "c.yaml:10: flags.f.canary.max_error_rate: must be between 0 and 100, got '120%'",
        "c.yaml:12: routes[0].flag: unknown flag 'g' (defined flags: f)",
        "c.yaml:12: routes[0].path: must start with '/', got 'api'",
    ]


def test_load_config_reports_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}:0: (root): cannot read file: No such file or directory"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"listen: :80\nname: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(binary)
    assert str(caught.value) == f"{binary}:2: (root): file is not UTF-8 text"


def test_load_config_uses_the_file_name_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(BACKENDS + "flags:\n  f: {percent: -1}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:5: flags.f.percent: must be between 0 and 100, got -1"
    ]
