"""Claims (认领): race-free claiming and the claim state machine (see ``app.policy``).

One module per part of a claim's life: ``access`` (who sees a claim; the
conditional transition), ``places`` (taking and giving back places),
``claiming``, ``giving_up`` (withdraw, posting cancelled), ``finishing``
(fulfil, confirm, auto-confirm), ``on_site`` (check-in, check-out, no-show)
and ``deadlines`` (what the scheduler ends).
"""

from app.services.claims.access import get_claim, list_my_claims, list_posting_claims
from app.services.claims.claiming import claim_posting
from app.services.claims.finishing import confirm_claim, fulfil_claim
from app.services.claims.giving_up import cancel_claims_for_posting, withdraw_claim
from app.services.claims.on_site import check_in, check_out, mark_no_show

__all__ = [
    "cancel_claims_for_posting",
    "check_in",
    "check_out",
    "claim_posting",
    "confirm_claim",
    "fulfil_claim",
    "get_claim",
    "list_my_claims",
    "list_posting_claims",
    "mark_no_show",
    "withdraw_claim",
]
