"""The five micro-postings (五微): posting, reading, review, editing, and how each ends.

A kind is a policy (``app.policy.POLICIES``), not a copy of the code; who may
do what is the actor's (``app.services.permissions``). One module each:
``creating``, ``fields`` (the field rules of each kind), ``views`` (what a
viewer sees), ``reviewing``, ``editing`` (and cancelling), ``ending`` (what
the scheduler closes and expires).
"""

from app.services.postings.creating import create_posting
from app.services.postings.editing import cancel_posting, update_posting
from app.services.postings.reviewing import approve_posting, reject_posting
from app.services.postings.views import PostingView, get_posting, view_of, views_of

__all__ = [
    "PostingView",
    "approve_posting",
    "cancel_posting",
    "create_posting",
    "get_posting",
    "reject_posting",
    "update_posting",
    "view_of",
    "views_of",
]
