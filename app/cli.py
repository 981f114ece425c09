"""Command-line tools: ``flask users create-admin``, ``flask seed``, ``flask scheduler run``,
``flask jobs list``, ``flask jobs run NAME``, ``flask certificates keygen|public-key``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from app.errors import AppError
from app.scheduler import JOB_NAMES
from app.validators import normalize_cn_mobile

users_cli = AppGroup("users", help="Manage accounts.")


@users_cli.command("create-admin")
@click.option("--phone", required=True, help="Mainland mobile number.")
@click.option("--password", required=True, help="At least 8 characters.")
@click.option("--name", required=True, help="Display name.")
def create_admin(phone: str, password: str, name: str) -> None:
    """Create the first admin (or make an existing account admin)."""
    from app.services.accounts import make_admin

    try:
        e164 = normalize_cn_mobile(phone)
    except ValueError:
        raise click.BadParameter("not a mainland mobile number", param_hint="--phone") from None
    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    try:
        user = make_admin(e164, password, name)
    except AppError as exc:
        raise click.ClickException(exc.slug) from None
    click.echo(f"admin {user.id} {user.phone_masked}")


@click.command("seed")
@with_appcontext
def seed() -> None:
    """Create demo data (idempotent): an admin, two orgs, coordinators, volunteers."""
    from app.seed import seed_demo_data

    for line in seed_demo_data():
        click.echo(line)


scheduler_cli = AppGroup("scheduler", help="The job scheduler (its own process in production).")


@scheduler_cli.command("run")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve this process's Prometheus metrics on this port (default SCHEDULER_METRICS_PORT; 0: not served).",
)
def scheduler_run(metrics_port: int | None) -> None:
    """Run every job on its interval until SIGTERM or Ctrl-C."""
    from flask import current_app

    from app.scheduler import run_scheduler

    port = current_app.config["SCHEDULER_METRICS_PORT"] if metrics_port is None else metrics_port
    if port:
        from app import metrics

        metrics.serve(port, current_app.config["SCHEDULER_METRICS_ADDR"])
    run_scheduler(current_app._get_current_object())


jobs_cli = AppGroup("jobs", help="Scheduler jobs, one at a time.")


@jobs_cli.command("list")
def jobs_list() -> None:
    """Show the jobs, their intervals and the variables that set them."""
    from flask import current_app

    from app.scheduler import JOBS, interval_of

    for spec in JOBS:
        seconds = interval_of(current_app, spec)
        click.echo(f"{spec.name:<24} every {seconds:>6}s  {spec.interval_key:<36} {spec.summary}")


@jobs_cli.command("run")
@click.argument("name", type=click.Choice(JOB_NAMES))
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per batch (default JOB_BATCH_SIZE).")
@click.option("--time-budget", type=click.FloatRange(min=0), help="Seconds after which no new batch starts.")
def jobs_run(name: str, batch_size: int | None, time_budget: float | None) -> None:
    """Run one job once, to completion unless --time-budget says otherwise, and print its counts."""
    from app.scheduler import job_spec, run_job

    result = run_job(job_spec(name).ref, batch_size=batch_size, time_budget=time_budget)
    click.echo(f"{name} " + " ".join(f"{key}={value}" for key, value in result.items()))


@click.command("doctor")
@with_appcontext
def doctor() -> None:
    """Check a production install: keys, database and migrations, Redis, push
    credentials, the scheduler's heartbeat. Exits 1 when anything is wrong."""
    from app.doctor import run_checks

    failed = False
    for name, problem in run_checks():
        click.echo(f"{'ok  ' if problem is None else 'FAIL'} {name:<11}{'' if problem is None else problem}")
        failed = failed or problem is not None
    if failed:
        raise SystemExit(1)


certificates_cli = AppGroup("certificates", help="The key that signs certificates (志愿服务证明).")


@certificates_cli.command("keygen")
def certificates_keygen() -> None:
    """Print a new signing key (for CERTIFICATE_SIGNING_KEY) and its public key."""
    from app.certificate_keys import new_signing_key

    seed, public = new_signing_key()
    click.echo(f"CERTIFICATE_SIGNING_KEY={seed}")
    click.echo(f"# public key (for CERTIFICATE_VERIFY_KEYS after the next rotation): {public}")


@certificates_cli.command("public-key")
def certificates_public_key() -> None:
    """Print the public key of the configured signing key (keep it in CERTIFICATE_VERIFY_KEYS when rotating)."""
    from flask import current_app

    from app.certificate_keys import CertificateKeyError, certificate_key, public_key_text

    try:
        keys = certificate_key(current_app)
    except CertificateKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{public_key_text(keys.signing.public_key())} key id {keys.signing_id.hex()}")


def register_cli(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(seed)
    app.cli.add_command(scheduler_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(doctor)
    app.cli.add_command(certificates_cli)
