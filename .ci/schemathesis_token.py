"""Print an access token for schemathesis: the seeded coordinator 13800000001,
made a volunteer too, so that every operation is reachable by one user."""

from app import create_app
from app.extensions import db
from app.models import User
from app.services import tokens, volunteers

app = create_app()
with app.app_context():
    user = db.session.query(User).filter_by(phone="+8613800000001").one()
    if user.volunteer is None:
        volunteers.register_volunteer(
            user, {"real_name": "王协调", "id_number": "330203198001011231", "district": "haishu", "skills": []}
        )
    pair = tokens.issue_tokens(user)
    db.session.commit()
    print(pair["access_token"])
