"""A storage password never leaves the process: not in messages, records, scripts or logs."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion.errors import ConfigError
from diffusion.hpo.cli import dispatch
from diffusion.hpo.storage import redact, scrub
from tests.conftest import PYTHON, python_env

MARK = "Xy7"  # every generated password starts so: no scheme, user, host or mask contains it
PIECES = ["@", ":", "/", "?", "#", "&", "=", "+", " ", "%", "%40", "%3A", "%2F", "%25", "%"]
passwords = st.builds(
    lambda parts: MARK + "".join(parts),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text("abcXYZ0189", min_size=1, max_size=4)), max_size=6),
)
users = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", max_size=8)
hosts = st.sampled_from(["127.0.0.1", "db.example", "h", "127.0.0.1:1", "[::1]:5432"])
schemes = st.sampled_from(["postgresql", "postgresql+psycopg", "mysql+pymysql"])
queries = st.sampled_from(["", "?sslmode=require", "?application_name=me&sslmode=require"])


@st.composite
def urls_with_a_password(draw: st.DrawFn) -> tuple[str, str]:
    """A storage URL and the password in it: in the user part, or as a ``password=`` query value."""
    password = draw(passwords)
    scheme, host, query = draw(schemes), draw(hosts), draw(queries)
    if draw(st.booleans()):
        return f"{scheme}://{draw(users)}:{password}@{host}/optuna{query}", password
    key = draw(st.sampled_from(["password", "sslpassword", "PASSWORD"]))
    sep = "&" if query else "?"
    return f"{scheme}://{draw(users)}@{host}/optuna{query}{sep}{key}={password}", password


def secret_forms(password: str) -> set[str]:
    """The password as typed and as a parser decodes it."""
    return {password, unquote(password), unquote(password.replace("+", " "))}


def assert_hidden(text: str, password: str) -> None:
    for form in secret_forms(password):
        assert form not in text, (form, text)


@settings(deadline=None)  # the first call imports SQLAlchemy
@given(urls_with_a_password())
def test_the_redaction_of_any_url_shows_no_password(case):
    url, password = case
    assert_hidden(redact(url), password)


@settings(deadline=None)  # the first call imports SQLAlchemy
@given(urls_with_a_password())
def test_a_driver_message_quoting_the_url_and_password_is_scrubbed(case):
    url, password = case
    message = f"connection to {url} failed: password authentication failed for {password!s} ({unquote(password)})"
    assert_hidden(scrub(message, url), password)


@settings(max_examples=60, deadline=None)
@given(urls_with_a_password())
def test_sbatch_never_writes_or_says_the_password(case):
    url, password = case
    out = io.StringIO()
    argv = ["sbatch", "--study", "big", "--n-trials", "8", "--workers", "2", "--storage", url]
    try:
        with contextlib.redirect_stdout(out):
            dispatch(argv, environ={})
    except ConfigError as exc:  # a URL SQLAlchemy would misread is refused; the message is redacted too
        assert_hidden(str(exc), password)
    assert_hidden(out.getvalue(), password)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://:secretpass@127.0.0.1:1/db", "postgresql://:***@127.0.0.1:1/db"),
        ("postgresql://u:p@ss@host/db", "postgresql://***"),
        ("postgresql://u:p%40ss@host/db", "postgresql://u:***@host/db"),
        ("postgresql://host/db?password=hunter2&sslmode=require", "postgresql://host/db?password=***&sslmode=require"),
        ("postgresql:u:hunter2@host", "postgresql:***"),
    ],
)
def test_redaction_of_the_cases_of_issue_19(url, shown):
    assert redact(url) == shown


@pytest.mark.parametrize("url", ["postgresql://me@db/optuna", "sqlite:////tmp/s.db", "journal:/tmp/a@b.log"])
def test_a_url_without_a_secret_is_shown_as_it_is(url):
    assert redact(url) == url


def hpo_in(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "diffusion.hpo", *args], capture_output=True, text=True, env=python_env(**env), cwd=cwd
    )


def files_text(directory: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file())


CONNECT_FAILS = [
    "postgresql://:secretpass@127.0.0.1:1/db",
    "postgresql://u:sec@retpass@127.0.0.1:1/db",
    "postgresql://u:secret%40pass@127.0.0.1:1/db",
    "postgresql://u@127.0.0.1:1/db?password=secretpass",
]


@pytest.mark.parametrize("url", CONNECT_FAILS)
@pytest.mark.parametrize("where", ["--storage", "env"])
def test_a_subcommand_that_cannot_connect_shows_no_password(tmp_path, url, where, blocked_tf):
    storage = ["--storage", url] if where == "--storage" else []
    env = {**blocked_tf, "OPTUNA_STORAGE": url} if where == "env" else blocked_tf
    result = hpo_in(tmp_path, "init", "--study", "s", *storage, **env)
    assert result.returncode == 2, result.stderr
    for form in ("secretpass", "retpass", "secret%40pass", "secret@pass"):
        assert form not in result.stdout + result.stderr + files_text(tmp_path)


@pytest.mark.parametrize("url", CONNECT_FAILS)
def test_sbatch_script_reads_a_password_url_from_the_job_environment(tmp_path, url, blocked_tf):
    result = hpo_in(
        tmp_path, "sbatch", "--study", "s", "--n-trials", "4", "--workers", "2", "--storage", url, **blocked_tf
    )
    text = result.stdout + result.stderr + files_text(tmp_path)
    assert "secretpass" not in text and "retpass" not in text and "secret%40pass" not in text
    if result.returncode == 0:  # a URL SQLAlchemy would misread is refused instead (exit 2)
        assert '"${OPTUNA_STORAGE:?' in result.stdout and "export OPTUNA_STORAGE=" not in result.stdout.replace(
            "# export", ""
        )
    else:
        assert result.returncode == 2 and "percent-encoded" in result.stderr


def test_a_url_without_a_password_is_exported_by_the_script(tmp_path, blocked_tf):
    url = "postgresql://me@db/optuna"
    result = hpo_in(
        tmp_path, "sbatch", "--study", "s", "--n-trials", "4", "--workers", "2", "--storage", url, **blocked_tf
    )
    assert result.returncode == 0 and f"export OPTUNA_STORAGE={url}" in result.stdout.splitlines()
