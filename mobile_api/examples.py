"""A request body example for every operation that takes one, keyed by operationId.

Swagger UI fills its "Try it out" box with these, and tests/test_openapi.py sends
each one (with the ids of a test's own rows) and expects it accepted: 2xx, or an
error the operation documents other than the body's own 422. Keep them real:
district codes of DISTRICTS, photo ids of uploads the caller made, valid ID
numbers, no dates that go stale (a wish's expiry defaults to 30 days).
"""

from __future__ import annotations

# The ids in these examples (org_id, user_id, volunteer_id, ids, photo_ids) name rows
# of the demo data; the test replaces them with rows of its own.
HOME = {"lat": 29.8683, "lng": 121.544}

REQUEST_EXAMPLES: dict[str, dict] = {
    "send_sms_code": {"phone": "13912345670", "purpose": "register"},
    "register": {
        "phone": "13912345678",
        "sms_code": "123456",
        "password": "demo-pass-2026",
        "display_name": "小张",
        "privacy_version": "1",
    },
    "login": {"phone": "13900000001", "password": "demo-pass-2026"},
    "reset_password": {"phone": "13900000001", "sms_code": "123456", "new_password": "another-pass-2026"},
    # Not a demo password either: a run of the served examples (schemathesis, signed in
    # as a demo account) never changes a demo account's password or phone.
    "change_phone": {"phone": "13912345679", "sms_code": "123456", "password": "the-account-password"},
    "accept_consents": {"privacy_version": "1"},
    # Not a demo password: a run of the examples never deletes a demo account.
    "delete_me": {"password": "the-account-password"},
    "update_me": {
        "display_name": "小张",
        "locale": "zh-CN",
        "timezone": "Asia/Shanghai",
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    },
    "change_password": {"old_password": "the-account-password", "new_password": "another-pass-2026"},
    "register_volunteer": {
        "real_name": "张小明",
        "id_number": "330203199001011236",
        "gender": "male",
        "skills": ["elderly", "repair"],
        "district": "haishu",
        "home": HOME,
        "push_radius_km": 5,
    },
    "apply_for_org": {"name": "海曙区邻里互助会", "kind": "community", "district": "haishu"},
    "reject_org": {"reason": "请补充组织的登记证明"},
    "add_member": {"user_id": 4, "role": "member"},
    "request_to_join": {"message": "我住在附近，想参加社区的志愿服务"},
    "reject_join_request": {"reason": "请先到社区服务站当面登记"},
    "report_to_community": {"org_id": 1},
    "add_honor_record": {
        "volunteer_id": 4,
        "hours": 2,
        "reason": "社区疫苗接种点引导，表现突出",
        "activity": "接种点引导",
        "place": "鼓楼街道社区卫生服务中心",
    },
    "create_posting": {
        "kind": "wish",
        "title": "帮独居老人每周买一次菜",
        "description": "王阿姨腿脚不便，希望有人每周六上午帮忙去菜场买菜送上门。",
        "district": "haishu",
        "address": "海曙区鼓楼街道",
        "location": HOME,
        "tags": ["助老"],
    },
    "update_posting": {"title": "帮独居老人每周六买菜", "tags": ["助老", "跑腿"]},
    "reject_posting": {"reason": "请写清楚需要帮忙的时间"},
    "cancel_posting": {"reason": "家人已经帮忙解决了"},
    "register_device": {
        "token": "1a0018970a3f2b4c1e2",
        "platform": "android",
        "provider": "jpush",
        "app_version": "1.0.0",
    },
    "mark_read": {"ids": [1]},
    "put_settings": {
        "muted_kinds": ["nearby_posting"],
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "nearby_alerts": True,
    },
    "claim_posting": {"message": "我周六上午有空，可以帮忙"},
    "fulfil_claim": {"note": "菜已送到王阿姨家", "minutes": 60, "photo_ids": [1]},
    "confirm_claim": {"rating": 5, "feedback": "小伙子很热心，谢谢！", "private_photos": False},
    "create_upload": {"purpose": "fulfil", "content_type": "image/jpeg", "size": 2_482_117},
    "check_in": HOME,
    "check_out": HOME,
    "reject_record": {"reason": "当天未在服务现场签到，请核实后重新登记"},
    "approve_records": {"ids": [1, 2, 3]},
    "issue_certificate": {"org_id": 1, "from": "2026-01-01"},
    "void_certificate": {"reason": "时长记录有误，重新开具"},
}
