"""Command-line tools: ``flask users create-admin``, ``flask seed``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from app.errors import AppError
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


def register_cli(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(seed)
