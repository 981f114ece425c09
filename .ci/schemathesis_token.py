"""Print an access token for schemathesis: the seeded coordinator 13800000001,
made a volunteer too and with the current privacy policy accepted, so that
every operation is reachable by one user (and no write answers 428)."""

from app import create_app
from app.extensions import db
from app.models import User
from app.services import accounts, tokens, volunteers

app = create_app()
with app.app_context():
    user = db.session.query(User).filter_by(phone="+8613800000001").one()
    if accounts.consent_required(user):
        accounts.record_consent(user, app.config["PRIVACY_VERSION"])
    if user.volunteer is None:
        volunteers.register_volunteer(
            user, {"real_name": "王协调", "id_number": "330203198001011231", "district": "haishu", "skills": []}
        )
    pair = tokens.issue_tokens(user)
    db.session.commit()
    print(pair["access_token"])
